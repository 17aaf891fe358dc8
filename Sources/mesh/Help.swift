/// The `--help` texts, one per level of the command tree. docs/CLI.md has the long form.
enum Help {
    static let common = """
        Common options:
          --coordinator HOST:PORT  the coordinator (default $MESH_COORDINATOR, else 127.0.0.1:6374);
                                   several separated by commas: the first that answers is used
          --authkey KEY            the mesh's shared key (default $MESH_AUTHKEY; visible in `ps`)
          --authkey-file PATH      read the key from a file
          --admin-key-file PATH    the coordinator's admin key, for `status` and `node kill`
                                   (default: the mesh key)
          --log-level L            error, warning (default), info, debug or trace; also MESH_LOG_LEVEL
          --allow-weak-key         use a key that is easy to guess (refused otherwise; make one
                                   with `mesh keygen`); also MESH_ALLOW_WEAK_KEY=1
          --help, -h               print help for the command
        """

    static let top = """
        usage: mesh <command> [options]

        See and poke a running mesh.

        Commands:
          node list                list the nodes: name, id, address, uptime, topics
          node kill NAME|ID        ask nodes to stop cleanly (--all for every node)
          topic list               list the topics with their types, senders, listeners and groups
          topic info TOPIC         a topic's type, senders and listeners
          topic echo TOPIC         print each message on a topic as one JSON line
          topic send TOPIC JSON    send a JSON value on a topic
          topic hz TOPIC           print the message rate on a topic every second
          topic bw TOPIC           print the bandwidth on a topic every second
          status                   the coordinator's uptime and each node's counters
          speedtest                measure throughput between two nodes in this process
          keygen                   print a new random key (mesh keygen > mesh.key), or a node key (--node)
          launch FILE              start a whole system from a launch file and keep it running
          http-token               print the token for the coordinator's web view (--http)
          discover                 list the coordinators that announce themselves on the LAN
          service list             list the services with their providers and groups
          service call NAME JSON   call a service with a JSON request and print the reply
          bag record|info|play     record messages to an MCAP file, describe one, replay one

        Options:
          --version                print the version
          --help, -h               print this help (mesh <command> --help for a command)

        \(common)

        Exit status: 0 on success, 1 when the command failed, 2 for bad arguments, 130 when
        Ctrl-C stopped a command before it was done (143 for SIGTERM).
        """

    static let node = """
        usage: mesh node <list|kill> [options]

        Commands:
          node list [--json]                 list the nodes: name, id, address, uptime, topics
          node kill NAME|ID [--json]         ask the nodes with that name or id to stop cleanly
          node kill --all [--json]           ask every node to stop cleanly

        \(common)
        """

    static let topic = """
        usage: mesh topic <list|echo|send|hz|bw> [options]

        Commands:
          topic list [--json]                          topics, types, sender and listener counts, groups
          topic info TOPIC [--json]                    a topic's type, senders and listeners
          topic echo TOPIC [--count N]                 print messages as JSON lines
          topic send TOPIC JSON [--rate HZ] [--count N] [--no-wait] [--timeout S]
          topic hz TOPIC [--window S] [--count N] [--json]
          topic bw TOPIC [--window S] [--count N] [--json]

        \(common)
        """

    static let service = """
        usage: mesh service <list|call> [options]

        Commands:
          service list [--json]                  services, provider counts and groups
          service call NAME JSON [--timeout S]   call a service, print its reply as JSON

        \(common)
        """

    static func text(for command: Command) -> String {
        switch command {
        case .bagRecord, .bagInfo, .bagPlay:
            return bagText(for: command)
        case .nodeList:
            return """
                usage: mesh node list [--json] [common options]

                Lists every node the coordinator knows: NAME, ID, ADDRESS (where peers dial it),
                PID, UPTIME (since it joined, by the coordinator's clock) and TOPICS.

                  --json    print a JSON array of objects instead of a table

                \(common)
                """
        case .nodeKill:
            return """
                usage: mesh node kill NAME|ID [--json] [common options]
                       mesh node kill --all [--json] [common options]

                Asks the nodes with that name (every member of the group) or that id, or every node
                with --all, to close and stop, and waits up to 5 s for them to leave. Prints one
                line per node: "stopped NAME ID" or "running NAME ID". Exits 1 when no node matched
                or some did not stop.

                  --all     every node in the mesh
                  --json    print {"stopped": [...], "running": [...]} instead

                \(common)
                """
        case .topicList:
            return """
                usage: mesh topic list [--json] [common options]

                Lists every topic some node listens to or declared a send on: TOPIC, TYPE (the
                message type declared there, with its fingerprint; "-" when untyped), SENDERS and
                LISTENERS (nodes) and GROUPS (listening node names, with the number of members;
                each message goes to one member per group).

                  --json    print a JSON array of objects instead of a table

                \(common)
                """
        case .topicInfo:
            return """
                usage: mesh topic info TOPIC [--json] [common options]

                Prints a topic's declared message type (name and fingerprint), the nodes that
                declared a send on it and the nodes that listen to it, each with the type it
                declared. Exits 1 when no node sends on or listens to TOPIC.

                  --json    print one JSON object instead

                \(common)
                """
        case .topicEcho:
            return """
                usage: mesh topic echo TOPIC [--count N] [common options]

                Joins the mesh as a node named mesh-echo-PID, listens to TOPIC and prints each
                message as one JSON line:
                  {"topic":"T","sender":"NAME","senderId":"ID","data":VALUE}           JSON payloads
                  {"topic":"T","sender":"NAME","senderId":"ID","bytes":N,"base64":"…"}  anything else
                Stops after N messages, or on Ctrl-C. Once the coordinator has recorded the listen
                it prints "listening on TOPIC" on standard error: from then on a send reaches it,
                so a script starts echo, waits for that line, then sends. It declares no type,
                so it prints messages of any type.

                  --count N  stop after N messages

                \(common)
                """
        case .topicSend:
            return """
                usage: mesh topic send TOPIC JSON [--rate HZ] [--count N] [--no-wait] [--timeout S]
                                                  [common options]

                Joins the mesh as a node named mesh-send, waits for a listener on TOPIC, and sends
                the JSON value (any JSON: object, array, string, number, true, false, null) the way
                a Swift node sends an Encodable value, so listeners decode it into their own type.
                JSON may also be `-` (read standard input) or `@FILE` (read FILE), up to 8 MiB:
                large values do not fit on a command line.

                  --count N    send N times (default 1; with --rate and no --count: until Ctrl-C)
                  --rate HZ    send HZ messages a second (default: as fast as possible)
                  --no-wait    send at once, even when nobody listens (the message is then lost)
                  --timeout S  how long to wait for a listener (default 5)

                On exit each receiver confirms how many messages it took (within 2 s); messages
                not confirmed (lost, or a receiver that does not answer) end it with one line and
                exit status 1.

                Ctrl-C before the messages asked for are sent prints what was sent and exits 130.

                \(common)
                """
        case .topicHz, .topicBw:
            let what = command == .topicHz ? "the message rate (msgs/s)" : "the bandwidth (bytes/s)"
            let name = command == .topicHz ? "hz" : "bw"
            return """
                usage: mesh topic \(name) TOPIC [--window S] [--count N] [--json] [common options]

                Joins the mesh as a node named mesh-\(name)-PID, listens to TOPIC and prints, once a
                second, \(what) over the last S seconds, and the total count.

                  --window S  the sliding window in seconds (default 5)
                  --count N   stop after N lines
                  --json      print one JSON object a line instead

                \(common)
                """
        case .status:
            return """
                usage: mesh status [--json] [common options]

                Prints the coordinator's uptime, topology version and node count, then a table of
                each node's counters as of its last heartbeat (nodes report every second):
                messages and bytes sent and received, drops, and when it was last heard from.
                Given several coordinators (--coordinator a:6374,b:6374), it first lists each:
                DEAD when it does not answer, else its node count and whether it holds the same
                records as the first that answered.

                  --json    print one JSON object instead

                \(common)
                """
        case .launch:
            return LaunchCommand.help
        case .discover:
            return """
                usage: mesh discover [--seconds S] [--mesh-name NAME] [--json] [common options]

                Listens for coordinator beacons (mesh-coordinator --announce) on UDP port 6374 for
                S seconds (default 3) and lists each sender once: the address it announces, its
                mesh name, and whether a node of mesh NAME (default $MESH_NAME, else default)
                with this key would use it, or why not (another mesh, a bad HMAC: another key).
                Exits 1 when no beacon of that mesh was trusted. Contacts nobody.

                  --seconds S       how long to listen (default 3)
                  --mesh-name NAME  the mesh to check beacons against
                  --json            print one JSON array instead

                \(common)
                """
        case .httpToken:
            return """
                usage: mesh http-token [--authkey KEY | --authkey-file PATH]

                Prints the bearer token that the coordinator's web view and /metrics
                (mesh-coordinator --http) ask for when the mesh has an authkey: send it as
                `Authorization: Bearer TOKEN`, or as the password of HTTP basic credentials
                (any user name). It is derived from the key (hex of HMAC-SHA256(key,
                "swift-mesh http token")), so the key itself stays out of browsers and
                Prometheus configurations. Contacts nobody.

                \(common)
                """
        case .serviceList:
            return """
                usage: mesh service list [--json] [common options]

                Lists every service some node provides: SERVICE, PROVIDERS (nodes) and GROUPS (node
                names, with the number of members; each call goes to one provider).

                  --json    print a JSON array of objects instead of a table

                \(common)
                """
        case .serviceCall:
            return """
                usage: mesh service call NAME JSON [--timeout S] [common options]

                Joins the mesh as a node named mesh-call, calls the service NAME with the JSON value
                (any JSON) as its request, the way a Swift node sends an Encodable value, and prints
                the reply as one line of JSON ({"bytes":N,"base64":"…"} when it is not JSON).
                Exits 1 when no node provides NAME, the call times out, or the provider reports
                an error; 130 when Ctrl-C ends the wait for the reply.

                  --timeout S  how long to wait for the reply (default 5)

                \(common)
                """
        case .speedtest:
            return """
                usage: mesh speedtest [--messages N] [--size BYTES] [--json] [common options]

                Starts two nodes in this process, a receiver on a private topic and a sender,
                sends N messages through the running mesh's coordinator (the data goes straight
                from node to node), and prints the rate measured at the receiver and how many
                were lost.

                  --messages N    how many messages (default 100000)
                  --size BYTES    payload size of each (default 64)
                  --json          print one JSON object instead

                \(common)
                """
        case .keygen:
            return """
                usage: mesh keygen [--base64]
                       mesh keygen --node
                       mesh keygen --public NODE_KEY_FILE

                Prints a new random key: 32 bytes from the system's random generator, as 64 hex
                digits (or 44 base64 characters with --base64). The printed text is the key; use
                it like any other, for example in a key file only its owner can read:
                  mesh keygen > mesh.key && chmod 600 mesh.key
                  mesh-coordinator --authkey-file mesh.key

                A key of your own that is easy to guess (a passphrase of a few words) is refused
                by every program unless --allow-weak-key or MESH_ALLOW_WEAK_KEY=1 says it is meant.

                  --base64  print the key in base64 instead of hex
                  --node    print a new node key pair's private key (64 hex digits) for a stable
                            node or coordinator identity: mesh keygen --node > node.key, then
                            MESH_IDENTITY_FILE=node.key or mesh-coordinator --identity-file node.key
                  --public FILE
                            print the public key and node id of a node key file (for a names
                            file, or to pin a coordinator with MESH_COORDINATOR_KEY)
                """
        }
    }
}
