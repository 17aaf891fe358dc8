"""swiftmesh: a pure-Python node for swift-mesh meshes (wire protocol version 2).

    import asyncio, swiftmesh

    async def main():
        node = await swiftmesh.build_mesh_node(name="sender")  # $MESH_COORDINATOR, $MESH_AUTHKEY
        await node.wait_for_listener("some-topic")
        await node.send("some-topic", {"hello": "world!"})
        await node.close()

    asyncio.run(main())
"""
import asyncio

from .node import (AuthenticationFailed, CoordinatorUnreachable, FrameTooLarge, InvalidName, MeshNode, NodeClosed,
                   Policy, RegistrationRejected, ServiceError, TypeMismatch, build_mesh_node)
from .protocol import HandshakeError, MeshError, ProtocolError, WeakKeyError, fingerprint, shape


async def forever():
    """Waits until the program is stopped (Ctrl-C, SIGTERM or cancellation), as easymesh's `forever()`:
    the last line of a program whose nodes only listen."""
    await asyncio.Event().wait()

__all__ = ["build_mesh_node", "MeshNode", "Policy", "MeshError", "AuthenticationFailed", "CoordinatorUnreachable",
           "RegistrationRejected", "ServiceError", "InvalidName", "FrameTooLarge", "NodeClosed", "HandshakeError", "ProtocolError",
           "WeakKeyError", "TypeMismatch", "forever", "shape", "fingerprint"]
__version__ = "0.1.0"
