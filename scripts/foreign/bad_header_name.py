#!/usr/bin/env python3
"""Produces a record whose headers include a name that is not UTF-8 (the bytes 0xff 0xfe), as a
producer writing raw bytes may, then a good record of the same key. `tests/tests/foreign_records.rs`
runs it (through `scripts/foreign/run`) and checks that the consumer dead-letters the first and
goes on with the second.

The record is written with `kafka-python`, which encodes a header name with `str.encode`: a `str`
whose `encode` gives other bytes puts them on the wire as they are (`confluent-kafka` turns a
`bytes` name into its text, `"b'\\xff\\xfe'"`).

Usage: bad_header_name.py BROKERS TOPIC RUN
"""

import json
import sys
import uuid

from kafka import KafkaProducer

# The CloudEvents type of the tests crate's `Parcel`.
PARCEL_TYPE = "petstore.parcel"


class RawName(str):
    """A header name whose bytes on the wire are not UTF-8."""

    def encode(self, *args, **kwargs):
        return b"\xff\xfe"


def headers(extra):
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", str(uuid.uuid4()).encode()),
        ("ce_source", b"raw-bytes-producer"),
        ("ce_type", PARCEL_TYPE.encode()),
        ("content-type", b"application/json"),
    ] + extra


def main():
    brokers, topic, run = sys.argv[1:4]
    key = f"{run}-bad-name"
    producer = KafkaProducer(bootstrap_servers=brokers.split(","), acks="all")
    for n, extra in [(0, [(RawName("raw"), b"not text")]), (1, [])]:
        payload = json.dumps({"key": key, "run": run, "n": n}).encode()
        sent = producer.send(topic, key=key.encode(), value=payload, headers=headers(extra))
        sent.get(timeout=30)
    producer.close()


if __name__ == "__main__":
    main()
