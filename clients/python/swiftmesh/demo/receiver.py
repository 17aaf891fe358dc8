"""Listens on "some-topic" and prints every message, exactly as Demo/demo-receiver does."""
import logging

import swiftmesh
from swiftmesh.demo import run, stop_on_signals, swift_description

log = logging.getLogger("swiftmesh")


USAGE = """usage: python -m swiftmesh.demo.receiver

Joins the mesh as "receiver", listens on the topic "some-topic" and prints each message as
`receiver got: topic=some-topic; data=[...]`, exactly as Demo/demo-receiver does. It prints
`receiver listening on some-topic` once ready, and runs until Ctrl-C or SIGTERM.

The coordinator is $MESH_COORDINATOR (default 127.0.0.1:6374), the key $MESH_AUTHKEY.
Exit status: 0 when stopped, 1 with one line on standard error when something failed."""


async def main():
    node = await swiftmesh.build_mesh_node(name="receiver")
    stop_on_signals(node)

    def received(topic, data):
        if not (isinstance(data, dict) and all(isinstance(v, str) for v in data.values())):
            node.stats["decodeFailures"] += 1
            log.warning("message on %s is not a [String: String]: %r", topic, data)
            return
        print(f"receiver got: topic={topic}; data={swift_description(data)}", flush=True)

    await node.listen("some-topic", received)
    print("receiver listening on some-topic", flush=True)
    await node.forever()


if __name__ == "__main__":
    logging.basicConfig(format="%(levelname)s [receiver] %(message)s", level=logging.WARNING)
    run(main, USAGE)
