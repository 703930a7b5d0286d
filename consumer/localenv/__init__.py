"""Local environment for tests and the demo: a real Kafka broker run from Maven Central jars."""

from consumer.localenv.broker import BrokerError, LocalBroker, create_topic, kafka_script
from consumer.localenv.ports import free_port

__all__ = ["BrokerError", "LocalBroker", "create_topic", "free_port", "kafka_script"]
