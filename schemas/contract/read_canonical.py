#!/usr/bin/env python3
"""Read the hub's canonical topics the way a data team's stock client does.

Uses confluent-kafka's Consumer with its SchemaRegistryClient and AvroDeserializer (nothing
hub-specific), reads the given topics from the beginning with isolation.level=read_committed,
deserializes every value through the schema registry, and prints one JSON line:

    {"read": n, "by_topic": {"hub.canonical.customer": n, ...}, "errors": [...], "tombstones": n}

Exit status: 0 when every record deserialized and the count is as asked (--expect N: exactly N;
--min N: at least N), 1 otherwise, 2 on bad arguments.

Example:
    python read_canonical.py --bootstrap 127.0.0.1:9092 --registry http://127.0.0.1:8081 \\
        --topics hub.canonical.customer,hub.canonical.vehicle --expect 1200 --timeout-s 120

Install: pip install -r requirements.txt (pinned versions this script was checked with).
"""

import argparse
import json
import sys
import time
import uuid
import warnings

# authlib (imported by the registry client for OAuth) warns about its httpx integration.
warnings.filterwarnings("ignore", module=r"authlib(\..*)?")

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition  # noqa: E402
from confluent_kafka.schema_registry import SchemaRegistryClient  # noqa: E402
from confluent_kafka.schema_registry.avro import AvroDeserializer  # noqa: E402
from confluent_kafka.serialization import MessageField, SerializationContext  # noqa: E402

MAX_ERRORS_LISTED = 100


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers (host:port[,host:port])")
    p.add_argument("--registry", required=True, help="schema registry base URL (e.g. http://127.0.0.1:8081)")
    p.add_argument(
        "--topics",
        required=True,
        action="append",
        help="comma-separated topics (repeatable), e.g. hub.canonical.customer,hub.canonical.lead",
    )
    count = p.add_mutually_exclusive_group(required=True)
    count.add_argument("--expect", type=int, help="exactly this many records must arrive")
    count.add_argument("--min", type=int, help="at least this many records must arrive")
    p.add_argument("--timeout-s", type=float, default=60.0, help="give up after this many seconds (default 60)")
    p.add_argument(
        "--consumer-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra librdkafka setting (repeatable), e.g. security.protocol=SASL_SSL",
    )
    p.add_argument(
        "--registry-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra schema registry client setting (repeatable), e.g. basic.auth.user.info=u:p",
    )
    args = p.parse_args(argv)
    args.topics = [t.strip() for group in args.topics for t in group.split(",") if t.strip()]
    if not args.topics:
        p.error("--topics names no topic")
    if (args.expect is not None and args.expect < 0) or (args.min is not None and args.min < 0):
        p.error("--expect/--min must not be negative")
    for item in args.consumer_config + args.registry_config:
        if "=" not in item:
            p.error(f"expected KEY=VALUE, got {item!r}")
    return args


def key_values(items):
    return dict(item.split("=", 1) for item in items)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def assign_all(consumer, topics, deadline):
    """Assign every partition of the topics from the beginning; wait for topics that do not exist yet."""
    missing = list(topics)
    partitions = []
    while missing and time.monotonic() < deadline:
        metadata = consumer.list_topics(timeout=max(0.1, min(5.0, deadline - time.monotonic())))
        still = []
        for topic in missing:
            t = metadata.topics.get(topic)
            if t is None or t.error is not None or not t.partitions:
                still.append(topic)
                continue
            partitions += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(t.partitions)]
        missing = still
        if missing:
            time.sleep(0.5)
    if partitions:
        consumer.assign(partitions)
    return partitions, missing


def main(argv=None):
    args = parse_args(argv)
    deadline = time.monotonic() + args.timeout_s

    registry = SchemaRegistryClient({"url": args.registry, **key_values(args.registry_config)})
    deserializer = AvroDeserializer(registry)
    conf = {
        "bootstrap.servers": args.bootstrap,
        # Partitions are assigned explicitly: the group is never joined and nothing is committed.
        "group.id": f"hub-contract-reader-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
    }
    conf.update(key_values(args.consumer_config))
    consumer = Consumer(conf)

    read = 0
    tombstones = 0
    by_topic = {t: 0 for t in args.topics}
    errors = []
    error_count = 0

    def error(entry):
        nonlocal error_count
        error_count += 1
        if len(errors) < MAX_ERRORS_LISTED:
            errors.append(entry)

    try:
        partitions, missing = assign_all(consumer, args.topics, deadline)
        for topic in missing:
            error({"topic": topic, "error": "topic not found before the timeout"})
        at_end = set()
        assigned = {(tp.topic, tp.partition) for tp in partitions}

        def done():
            if not assigned or at_end != assigned:
                return False
            return read >= (args.expect if args.expect is not None else args.min)

        while time.monotonic() < deadline and assigned and not done():
            msg = consumer.poll(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
            if msg is None:
                continue
            where = (msg.topic(), msg.partition())
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(where)
                else:
                    error({"topic": msg.topic(), "partition": msg.partition(), "error": str(msg.error())})
                    if msg.error().fatal():
                        break
                continue
            at_end.discard(where)
            if msg.value() is None:
                tombstones += 1
                continue
            try:
                value = deserializer(msg.value(), SerializationContext(msg.topic(), MessageField.VALUE))
                if not isinstance(value, dict):
                    raise ValueError(f"deserialized to {type(value).__name__}, not a record")
            except Exception as e:  # noqa: BLE001 - every failure is reported, none is fatal
                error(
                    {
                        "topic": msg.topic(),
                        "partition": msg.partition(),
                        "offset": msg.offset(),
                        "error": f"{type(e).__name__}: {e}",
                    }
                )
                continue
            read += 1
            by_topic[msg.topic()] = by_topic.get(msg.topic(), 0) + 1

        if not done() and not missing:
            error(
                {
                    "error": f"timed out after {args.timeout_s}s",
                    "partitions_at_end": len(at_end),
                    "partitions": len(assigned),
                }
            )
    except KafkaException as e:
        error({"error": f"KafkaException: {e}"})
    finally:
        consumer.close()

    ok = error_count == 0
    if args.expect is not None and read != args.expect:
        ok = False
        error({"error": f"expected exactly {args.expect} records, read {read}"})
    if args.min is not None and read < args.min:
        ok = False
        error({"error": f"expected at least {args.min} records, read {read}"})
    report = {"read": read, "by_topic": by_topic, "errors": errors, "tombstones": tombstones}
    if error_count > len(errors):
        report["errors_not_listed"] = error_count - len(errors)
    print(json.dumps(report, sort_keys=True), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
