"""This directory is installed as the package `consumer.schemas` (see pyproject.toml), so the Avro
schema and the demo's sample events and settings ship inside the wheel."""
