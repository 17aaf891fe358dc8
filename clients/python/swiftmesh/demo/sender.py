"""Waits for someone to listen on "some-topic", then sends one message, as Demo/demo-sender does."""
import logging

import swiftmesh
from swiftmesh.demo import run


USAGE = """usage: python -m swiftmesh.demo.sender

Joins the mesh as "sender", waits up to 30 s for a node to listen on "some-topic", sends it
{"hello": "world!"} once, prints `sender sent: topic=some-topic; data=["hello": "world!"]`, and
exits, exactly as Demo/demo-sender does.

The coordinator is $MESH_COORDINATOR (default 127.0.0.1:6374), the key $MESH_AUTHKEY.
Exit status: 0 once sent, 1 with one line on standard error when something failed."""


async def main():
    node = await swiftmesh.build_mesh_node(name="sender")
    await node.wait_for_listener("some-topic", timeout=30)
    await node.send("some-topic", {"hello": "world!"})
    print('sender sent: topic=some-topic; data=["hello": "world!"]', flush=True)
    await node.close()


if __name__ == "__main__":
    logging.basicConfig(format="%(levelname)s [sender] %(message)s", level=logging.WARNING)
    run(main, USAGE)
