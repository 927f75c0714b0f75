"""Produces Avro events the way a provider's Python service would.

Uses confluent-kafka's Producer with its AvroSerializer: the serializer looks
the schema up in the registry under the topic's value subject (it must be
registered already: auto-registration is off, as in production setups where
schemas are registered by CI or by `hookline setup-topics`) and writes the
Confluent wire format (magic byte 0, schema id, Avro body).

Input, one JSON object on stdin:
    {"bootstrap": "127.0.0.1:9092",
     "registry": "http://127.0.0.1:8081/apis/ccompat/v7",
     "topic": "events-x",
     "schema": "<Avro schema text>",
     "records": [{"key": "acme", "value": {"type": "...", "data": "...", ...}}]}

Output on stdout: one JSON line per record, in input order, with the
partition and offset the broker acknowledged. Exit 1 with a one-line error
on stderr when anything fails.
"""

import json
import sys

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext


def main() -> int:
    spec = json.load(sys.stdin)
    registry = SchemaRegistryClient({"url": spec["registry"]})
    serializer = AvroSerializer(
        registry,
        spec["schema"],
        conf={"auto.register.schemas": False, "use.latest.version": False},
    )
    producer = Producer(
        {
            "bootstrap.servers": spec["bootstrap"],
            "enable.idempotence": True,
            "linger.ms": 0,
        }
    )
    topic = spec["topic"]
    acked = [None] * len(spec["records"])
    errors = []

    def on_delivery(index):
        def callback(err, msg):
            if err is not None:
                errors.append(f"record {index}: {err}")
            else:
                acked[index] = {"partition": msg.partition(), "offset": msg.offset()}

        return callback

    for index, record in enumerate(spec["records"]):
        value = serializer(
            record["value"], SerializationContext(topic, MessageField.VALUE)
        )
        producer.produce(
            topic,
            key=record["key"].encode(),
            value=value,
            on_delivery=on_delivery(index),
        )
    remaining = producer.flush(30)
    if remaining or errors or any(a is None for a in acked):
        detail = "; ".join(errors) or f"{remaining} records not acknowledged"
        print(f"produce.py: {detail}", file=sys.stderr)
        return 1
    for ack in acked:
        print(json.dumps(ack))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as error:  # one line, for the test's failure message
        print(f"produce.py: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
