"""Local environment for tests and the demo: a real Kafka broker run from Maven Central jars, and
Apicurio Registry for the Schema Registry tests."""

from consumer.localenv.broker import BrokerError, LocalBroker, create_topic
from consumer.localenv.ports import free_port
from consumer.localenv.registry import LocalRegistry

__all__ = [
    "BrokerError",
    "LocalBroker",
    "LocalRegistry",
    "create_topic",
    "free_port",
]
