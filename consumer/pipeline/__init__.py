"""The at-least-once core, one concern a module: what is in flight and may be committed
(`ledger`), which partitions may be read now (`flow`), where each record goes (`router`), and
what happens when partitions come and go (`rebalance`). `consumer.app` composes them with a
source, a sink and a dead-letter queue, all passed in, so fakes can drive the core in tests."""
