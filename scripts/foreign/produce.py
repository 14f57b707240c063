#!/usr/bin/env python3
"""Produces CloudEvents records as a producer outside eventbus would: events built with the
official CloudEvents SDK for Python (`cloudevents`, its Kafka binding `cloudevents.kafka.to_binary`,
binary content mode) and sent with `confluent-kafka`. `tests/tests/foreign_records.rs` runs it
(through `scripts/foreign/run`) and checks what an eventbus consumer makes of each record.

Usage: produce.py BROKERS TOPIC RUN

Prints one JSON line per record sent: {"n": .., "id": .., "headers": [..]}.
"""

import json
import sys

from cloudevents.http import CloudEvent
from cloudevents.kafka import to_binary
from confluent_kafka import Producer

# The CloudEvents type of the tests crate's `Parcel` (`petstore.parcel`: a system event of the
# petstore service), as a foreign producer would write it.
PARCEL_TYPE = "petstore.parcel"
SOURCE = "python-inventory"


def parcel(run, n, **more):
    return dict({"key": f"{run}-py", "run": run, "n": n}, **more)


def records(run):
    """(n, CloudEvent, header names to leave out) for each record, in order."""
    base = {
        "type": PARCEL_TYPE,
        "source": SOURCE,
        "datacontenttype": "application/json",
        "partitionkey": f"{run}-py",
    }
    yield 0, CloudEvent(dict(base), parcel(run, 0)), ()
    # Without `ce_time` (optional in CloudEvents): the SDK always sets one, so it is left out.
    yield 1, CloudEvent(dict(base), parcel(run, 1)), ("ce_time",)
    # Extension attributes: version 2 selects the v2 type.
    yield 2, CloudEvent(dict(base, schemaversion="2"), parcel(run, 2, priority=7)), ()
    yield 3, CloudEvent(dict(base, schemaversion="1", category="system"), parcel(run, 3)), ()
    # Without a content type (JSON is the default; the SDK's Kafka binding needs one, so it is
    # left out of the record).
    yield 4, CloudEvent(dict(base), parcel(run, 4)), ("content-type",)
    # Malformed: a schema version that is not a number is dead-lettered.
    yield 5, CloudEvent(dict(base, schemaversion="two"), parcel(run, 5)), ()
    # After it, the key goes on.
    yield 6, CloudEvent(dict(base), parcel(run, 6)), ()


def main():
    brokers, topic, run = sys.argv[1:4]
    producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": True})
    for n, event, leave_out in records(run):
        message = to_binary(event)
        headers = [(k, v) for k, v in message.headers.items() if k not in leave_out]
        producer.produce(topic, key=message.key, value=message.value, headers=headers)
        print(json.dumps({"n": n, "id": event["id"], "headers": [k for k, _ in headers]}))
    left = producer.flush(30)
    if left:
        sys.exit(f"produce.py: {left} record(s) not acknowledged by {brokers} within 30 s")


if __name__ == "__main__":
    main()
