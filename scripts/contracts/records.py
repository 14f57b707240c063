#!/usr/bin/env python3
"""Collects real records from Kafka as samples for the JSON Schema check: for every channel
(topic) of an AsyncAPI document, reads the topic from its start to its current end and keeps up
to three payloads of each event version, named by the record's own headers
(`{ce_source}.{last segment of ce_type}.v{ce_schemaversion}.schema.json`).

Usage: records.py BROKERS ASYNCAPI_JSON OUT_DIR REQUIRED_SCHEMA...

Writes OUT_DIR/records/*.json and appends `{schema, payload, valid: true, what}` entries to
OUT_DIR/manifest.json (created when missing), the format scripts/contracts/check-payloads.mjs
reads. Fails when a REQUIRED_SCHEMA (a schema file name) got no record.
"""

import json
import os
import sys
import time
import uuid

from confluent_kafka import Consumer, TopicPartition


def main():
    brokers, document, out, *required = sys.argv[1:]
    topics = [c["address"] for c in json.load(open(document))["channels"].values()]
    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": f"eventbus-contract-records-{uuid.uuid4()}",
        "enable.auto.commit": False,
    })
    ends = {}
    for topic in topics:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            continue
        for p in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[(topic, p)] = high
    consumer.assign([TopicPartition(t, p, 0) for (t, p) in ends])
    kept = {}
    os.makedirs(os.path.join(out, "records"), exist_ok=True)
    manifest_path = os.path.join(out, "manifest.json")
    manifest = json.load(open(manifest_path)) if os.path.exists(manifest_path) else []
    deadline = time.time() + 60
    while ends and time.time() < deadline:
        message = consumer.poll(1.0)
        if message is None or message.error():
            continue
        key = (message.topic(), message.partition())
        if message.offset() + 1 >= ends.get(key, 0):
            ends.pop(key, None)
        headers = {k: (v or b"").decode("utf-8", "replace") for k, v in (message.headers() or [])}
        if "ce_type" not in headers:
            continue
        name = headers["ce_type"].rsplit(".", 1)[-1]
        schema = f'{headers.get("ce_source")}.{name}.v{headers.get("ce_schemaversion", "1")}.schema.json'
        if kept.get(schema, 0) >= 3:
            continue
        kept[schema] = kept.get(schema, 0) + 1
        payload = f"records/{schema.removesuffix('.schema.json')}.{kept[schema]}.json"
        with open(os.path.join(out, payload), "wb") as f:
            f.write(message.value())
        manifest.append({
            "schema": schema,
            "payload": payload,
            "valid": True,
            "what": f"a record of {message.topic()} (offset {message.offset()})",
        })
    consumer.close()
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1)
    for schema, n in sorted(kept.items()):
        print(f"records: {n} of {schema}")
    missing = [r for r in required if r not in kept]
    if missing:
        sys.exit(f"records.py: no record of {', '.join(missing)} on {brokers}: run the petstore first")


if __name__ == "__main__":
    main()
