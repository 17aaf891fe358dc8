"""Waits for someone to listen on "some-topic", then sends one message, as Demo/demo-sender does."""
import logging

import swiftmesh
from swiftmesh.demo import run


async def main():
    node = await swiftmesh.build_mesh_node(name="sender")
    await node.wait_for_listener("some-topic", timeout=30)
    await node.send("some-topic", {"hello": "world!"})
    print('sender sent: topic=some-topic; data=["hello": "world!"]', flush=True)
    await node.close()


if __name__ == "__main__":
    logging.basicConfig(format="%(levelname)s [sender] %(message)s", level=logging.WARNING)
    run(main)
