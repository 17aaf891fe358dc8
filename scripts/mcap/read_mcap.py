#!/usr/bin/env python3
"""Reads an MCAP file with the `mcap` library (PyPI) and prints what it holds as one JSON object.

The Swift tests compare this against what they sent: an outside check that `mesh bag record`
writes files other tools read. Every CRC is checked: chunks and the data section by the
non-seeking reader, the summary through the seeking reader's summary.

usage: read_mcap.py FILE [OUT]   (OUT: write the JSON there instead of standard output)
"""
import base64
import json
import sys

from mcap.reader import NonSeekingReader, make_reader


def main(path):
    """Reads the file at `path`; returns what it holds as a JSON-ready dict."""
    with open(path, "rb") as stream:
        # Every message in file order, with chunk and data-section CRCs checked.
        messages = []
        for schema, channel, message in NonSeekingReader(stream, validate_crcs=True).iter_messages():
            messages.append({
                "topic": channel.topic,
                "encoding": channel.message_encoding,
                "metadata": dict(channel.metadata),
                "schema": schema.name if schema is not None else None,
                "sequence": message.sequence,
                "log_time": message.log_time,
                "publish_time": message.publish_time,
                "data": base64.b64encode(message.data).decode("ascii"),
            })
    with open(path, "rb") as stream:
        reader = make_reader(stream, validate_crcs=True)
        header = reader.get_header()
        summary = reader.get_summary()
        statistics = summary.statistics if summary is not None else None
        indexed = sum(1 for _ in reader.iter_messages(log_time_order=False))
    result = {
        "profile": header.profile,
        "library": header.library,
        "messages": messages,
        "indexed_message_count": indexed,
        "channels": len(summary.channels) if summary is not None else None,
        "chunk_indexes": len(summary.chunk_indexes) if summary is not None else None,
        "statistics": None if statistics is None else {
            "message_count": statistics.message_count,
            "channel_count": statistics.channel_count,
            "chunk_count": statistics.chunk_count,
            "message_start_time": statistics.message_start_time,
            "message_end_time": statistics.message_end_time,
            "channel_message_counts": {str(k): v for k, v in statistics.channel_message_counts.items()},
        },
    }
    return result


if __name__ == "__main__":
    result = main(sys.argv[1])
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w") as out:
            json.dump(result, out)
    else:
        json.dump(result, sys.stdout)
