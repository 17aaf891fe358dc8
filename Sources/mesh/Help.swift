/// The `--help` texts, one per level of the command tree. docs/CLI.md has the long form.
enum Help {
    static let common = """
        Common options:
          --coordinator HOST:PORT  the coordinator (default $MESH_COORDINATOR, else 127.0.0.1:6374)
          --authkey KEY            the mesh's shared key (default $MESH_AUTHKEY; visible in `ps`)
          --authkey-file PATH      read the key from a file
          --log-level L            error, warning (default), info, debug or trace; also MESH_LOG_LEVEL
          --help, -h               print help for the command
        """

    static let top = """
        usage: mesh <command> [options]

        See and poke a running mesh.

        Commands:
          node list                list the nodes: name, id, address, uptime, topics
          node kill NAME|ID        ask nodes to stop cleanly (--all for every node)
          topic list               list the topics with their listeners and groups
          topic echo TOPIC         print each message on a topic as one JSON line
          topic send TOPIC JSON    send a JSON value on a topic
          topic hz TOPIC           print the message rate on a topic every second
          topic bw TOPIC           print the bandwidth on a topic every second
          status                   the coordinator's uptime and each node's counters
          speedtest                measure throughput between two nodes in this process
          bag record|info|play     record messages to an MCAP file, describe one, replay one

        Options:
          --version                print the version
          --help, -h               print this help (mesh <command> --help for a command)

        \(common)

        Exit status: 0 on success, 1 when the command failed, 2 for bad arguments.
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
          topic list [--json]                          topics, listener counts and groups
          topic echo TOPIC [--count N]                 print messages as JSON lines
          topic send TOPIC JSON [--rate HZ] [--count N] [--no-wait] [--timeout S]
          topic hz TOPIC [--window S] [--count N] [--json]
          topic bw TOPIC [--window S] [--count N] [--json]

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

                Lists every topic some node listens to: TOPIC, LISTENERS (nodes) and GROUPS (node
                names, with the number of members; each message goes to one member per group).

                  --json    print a JSON array of objects instead of a table

                \(common)
                """
        case .topicEcho:
            return """
                usage: mesh topic echo TOPIC [--count N] [common options]

                Joins the mesh as a node named mesh-echo-PID, listens to TOPIC and prints each
                message as one JSON line:
                  {"topic":"T","sender":"NAME","senderId":"ID","data":VALUE}           JSON payloads
                  {"topic":"T","sender":"NAME","senderId":"ID","bytes":N,"base64":"…"}  anything else
                Stops after N messages, or on Ctrl-C.

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

                  --count N    send N times (default 1; with --rate and no --count: until Ctrl-C)
                  --rate HZ    send HZ messages a second (default: as fast as possible)
                  --no-wait    send at once, even when nobody listens (the message is then lost)
                  --timeout S  how long to wait for a listener (default 5)

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

                  --json    print one JSON object instead

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
        }
    }
}
