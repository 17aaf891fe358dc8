"""swiftmesh: a pure-Python node for swift-mesh meshes (wire protocol version 2).

    import asyncio, swiftmesh

    async def main():
        node = await swiftmesh.build_mesh_node(name="sender")  # $MESH_COORDINATOR, $MESH_AUTHKEY
        await node.wait_for_listener("some-topic")
        await node.send("some-topic", {"hello": "world!"})
        await node.close()

    asyncio.run(main())
"""
from .node import (AuthenticationFailed, CloseReport, CoordinatorUnreachable, FrameTooLarge, InvalidName, MeshNode,
                   NodeClosed, Policy, RegistrationRejected, ServiceError, build_mesh_node)
from .protocol import HandshakeError, MeshError, ProtocolError, WeakKeyError

__all__ = ["build_mesh_node", "MeshNode", "CloseReport", "Policy", "MeshError", "AuthenticationFailed", "CoordinatorUnreachable",
           "RegistrationRejected", "ServiceError", "InvalidName", "FrameTooLarge", "NodeClosed", "HandshakeError", "ProtocolError",
           "WeakKeyError"]
__version__ = "0.1.0"
