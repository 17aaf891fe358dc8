"""The demos of Demo/, in Python: `python -m swiftmesh.demo.receiver` and `python -m swiftmesh.demo.sender`."""
import asyncio
import signal
import sys


def swift_description(value):
    """How Swift prints a `[String: String]` (the demos' message type): `["hello": "world!"]`."""
    if not value:
        return "[:]"
    return "[" + ", ".join(f"{_quoted(k)}: {_quoted(v)}" for k, v in value.items()) + "]"


def _quoted(text):
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    escaped = escaped.replace("\t", "\\t").replace("\0", "\\0")
    return f'"{escaped}"'


def run(main, usage=None):
    """Runs a demo; `--help` or `-h` prints `usage` and exits 0; any other argument is a usage error
    (exit 2); a failure is one line `PROGRAM: REASON` and exit 1, never a traceback."""
    program = sys.argv[0].rsplit("/", 1)[-1].replace(".py", "")
    arguments = sys.argv[1:]
    if "--help" in arguments or "-h" in arguments:
        print(usage or f"usage: python -m swiftmesh.demo.{program}")
        sys.exit(0)
    if arguments:
        print(f"{program}: unknown argument {arguments[0]!r} (try --help)", file=sys.stderr)
        sys.exit(2)
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    except Exception as error:  # the demo's whole error report
        print(f"{program}: {error}", file=sys.stderr)
        sys.exit(1)


def stop_on_signals(node):
    # A parent may have blocked these (a Swift test runner does); a demo must still stop on them.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    loop = asyncio.get_event_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, lambda: loop.create_task(node.close()))
