"""swiftmesh: a pure-Python node for swift-mesh meshes (wire protocol version 3).

    import asyncio, swiftmesh

    async def main():
        node = await swiftmesh.build_mesh_node(name="sender")  # $MESH_COORDINATOR, $MESH_AUTHKEY
        await node.wait_for_listener("some-topic")
        await node.send("some-topic", {"hello": "world!"})
        await node.close()

    asyncio.run(main())
"""
import asyncio
import signal

from .node import (AuthenticationFailed, CloseReport, CoordinatorUnreachable, FrameTooLarge, InvalidName, MeshNode,
                   NodeClosed, Policy, RegistrationRejected, ServiceError, TypeMismatch, build_mesh_node)
from .protocol import HandshakeError, Identity, MeshError, ProtocolError, WeakKeyError, fingerprint, shape


async def forever():
    """Waits until the program is asked to stop (Ctrl-C or SIGTERM: it then returns) or is cancelled,
    as easymesh's `forever()`: the last line of a program whose nodes only listen."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed = []
    # A parent may have blocked these (a Swift test runner does); Ctrl-C must still end the program.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    for number in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(number, stop.set)
            installed.append(number)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
            pass
    try:
        await stop.wait()
    finally:
        for number in installed:
            loop.remove_signal_handler(number)

__all__ = ["build_mesh_node", "MeshNode", "CloseReport", "Policy", "MeshError", "AuthenticationFailed", "CoordinatorUnreachable",
           "RegistrationRejected", "ServiceError", "InvalidName", "FrameTooLarge", "NodeClosed", "HandshakeError", "ProtocolError",
           "WeakKeyError", "TypeMismatch", "Identity", "forever", "shape", "fingerprint"]
__version__ = "0.1.0"
