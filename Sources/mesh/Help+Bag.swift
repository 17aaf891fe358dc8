/// The `--help` texts of `mesh bag`; docs/CLI.md has the long form.
extension Help {
    static let bag = """
        usage: mesh bag <record|info|play> [options]

        Commands:
          bag record -o FILE.mcap [TOPIC ...] [--all] [--duration S] [--max-size BYTES]
          bag info FILE [--json]
          bag play FILE [--rate X] [--loop] [--topics A,B] [--start S] [--no-wait] [--timeout S]

        \(common)
        """

    static func bagText(for command: Command) -> String {
        switch command {
        case .bagRecord:
            return """
                usage: mesh bag record -o FILE.mcap [TOPIC ...] [--all] [--duration S] [--max-size BYTES]
                                       [common options]

                Joins the mesh as a node named mesh-bag-PID (a group of its own, so worker pools
                still get their copy) and writes every message on the TOPICs to an MCAP file: its
                receive time, topic, sender name and id, and the payload bytes as sent. Prints a
                progress line on standard error every second; Ctrl-C or SIGTERM ends the file
                properly. Data reaches the disk at least every second, so even a killed recorder
                leaves a readable file.

                  -o, --output FILE   the MCAP file to write (replaced if it exists)
                  --all               every topic anyone listens to, including ones that appear later
                  --duration S        stop after S seconds
                  --max-size BYTES    stop once the file reaches BYTES (suffixes K, M, G: KiB, MiB, GiB)

                \(common)
                """
        case .bagInfo:
            return """
                usage: mesh bag info FILE [--json]

                Describes an MCAP file: size, start and end time, duration, messages per topic
                (with encodings and senders), and whether it ended cleanly or was cut short (a
                killed recorder's file: what is there is counted). Checks every CRC on the way.
                Needs no mesh.

                  --json    print one JSON object instead
                """
        case .bagPlay:
            return """
                usage: mesh bag play FILE [--rate X] [--loop] [--topics A,B] [--start S] [--no-wait]
                                          [--timeout S] [common options]

                Joins the mesh as a node named mesh-bag-play-PID and sends the file's messages
                again, each on its topic with its payload as recorded, spaced as they were recorded
                (divided by the rate). First waits for a listener on each topic. Prints what it sent.

                  --rate X               play X times as fast (default 1; 2 is twice as fast)
                  --loop                 start over at the end, until Ctrl-C
                  --topics A,B           only these topics
                  --start S              skip the first S seconds of the recording
                  --wait-for-listeners   wait for a listener on each topic first (the default)
                  --no-wait              do not wait for listeners
                  --timeout S            how long to wait for listeners (default 5)

                Ctrl-C before the end of the file (without --loop) prints what was sent and exits 130.

                \(common)
                """
        default:
            return text(for: command)
        }
    }
}
