"""A minimal coordinator in Python that also knows services (serve, unserve, `services`).

For testing the client's services, and its protocol version 3 handshakes, without the Swift
binaries: registration (with version 3's key check), snapshot, one delta per change, heartbeat answers.
"""
import asyncio
import json

from swiftmesh import protocol as p
from swiftmesh.connection import Connection


class StubCoordinator:
    def __init__(self, key_text):
        self.key = p.stretch_key(key_text)
        self.nodes = {}
        self.version = 0
        self.sessions = {}

    async def start(self):
        self.server = await asyncio.get_event_loop().create_server(self._accept, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def close(self):
        self.server.close()
        for connection in list(self.sessions):
            connection.close()

    def _accept(self):
        handshake = p.Handshake(False, served={p.PURPOSE_CONTROL: self.key, p.PURPOSE_INSPECT: self.key})
        return Connection(handshake, 1 << 20, self._frames, self._closed)

    def _send(self, connection, message):
        connection.send(p.control_frame(message))

    def _change(self, change):
        start = self.version
        self.version += 1
        for connection, node_id in self.sessions.items():
            if node_id is not None:
                self._send(connection, {"type": "delta", "delta": {"changes": [change], "from": start, "to": self.version}})

    def _frames(self, connection, frames):
        for _, body in frames:
            message = json.loads(body)
            kind = message["type"]
            node_id = self.sessions.get(connection)
            if kind == "register":
                record = dict(message["node"], host=connection.remote, joined=0.0)
                proven = connection.handshake.peer_static
                if (not isinstance(record.get("key"), str) or p.node_id_for_key(bytes.fromhex(record["key"])) != record["id"]
                        or (proven is not None and proven.hex() != record["key"])):
                    self._send(connection, {"type": "rejected", "reason": "the record's key is not the node's"})
                    connection.close("rejected")
                    return
                self.nodes[record["id"]] = record
                self._change({"op": "join", "node": record})
                self.sessions[connection] = record["id"]
                self._send(connection, {"type": "welcome", "node": record, "topology": {
                    "nodes": sorted(self.nodes.values(), key=lambda r: r["id"]), "version": self.version}})
            elif kind in ("listen", "unlisten", "serve", "unserve") and node_id:
                field, value = ("topics", message["topic"]) if "listen" in kind else ("services", message["service"])
                values = set(self.nodes[node_id].get(field) or [])
                values.add(value) if kind in ("listen", "serve") else values.discard(value)
                self.nodes[node_id][field] = sorted(values)
                self._change({"op": kind, "id": node_id, field[:-1]: value})
            elif kind == "heartbeat":
                self._send(connection, {"type": "heartbeat"})
            elif kind == "bye":
                connection.close()

    def _closed(self, connection, reason):
        node_id = self.sessions.pop(connection, None)
        if node_id and self.nodes.pop(node_id, None):
            self._change({"op": "leave", "id": node_id})
