#!/usr/bin/env python3
"""Writes a small MCAP file with the `mcap` library (PyPI), for `mesh bag info` and `play` to read.

Two channels, uncompressed chunks (mesh bag reads no compression):
  fixture/json   message encoding json, with a jsonschema schema: {"n": i, "text": "message i"}
  fixture/bytes  message encoding application/octet-stream, no schema: bytes([i] * 8)
Messages alternate between them, 20 ms apart, starting at 1,700,000,000 s since 1970.

usage: make_fixture.py FILE [COUNT]   (COUNT messages per channel, default 10)
"""
import json
import sys

from mcap.writer import CompressionType, Writer

START = 1_700_000_000 * 1_000_000_000
STEP = 20_000_000


def main(path, count):
    with open(path, "wb") as stream:
        writer = Writer(stream, compression=CompressionType.NONE)
        writer.start(profile="", library="mcap python fixture")
        schema = writer.register_schema(
            name="Fixture", encoding="jsonschema",
            data=json.dumps({"type": "object", "properties": {"n": {"type": "integer"}, "text": {"type": "string"}}}).encode())
        json_channel = writer.register_channel(
            topic="fixture/json", message_encoding="json", schema_id=schema, metadata={"origin": "python"})
        bytes_channel = writer.register_channel(
            topic="fixture/bytes", message_encoding="application/octet-stream", schema_id=0)
        time = START
        for i in range(count):
            payload = json.dumps({"n": i, "text": f"message {i}"}, separators=(",", ":")).encode()
            writer.add_message(channel_id=json_channel, log_time=time, publish_time=time, data=payload, sequence=i)
            time += STEP
            writer.add_message(channel_id=bytes_channel, log_time=time, publish_time=time, data=bytes([i % 256] * 8), sequence=i)
            time += STEP
        writer.finish()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10)
