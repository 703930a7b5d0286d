"""Kafka message values and Segment events, both ways: the Avro schema the repo ships
(`schema_files`), events to Avro values (`encode`), values back to events (`decode`), and writer
schemas by Confluent schema id from a Schema Registry (`schema_registry`). Each name is imported
from its own module; this package re-exports nothing."""
