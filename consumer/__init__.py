"""segment-fullstory-consumer: Segment events from Kafka (Avro) to FullStory's server API."""

__version__ = "0.1.0"
