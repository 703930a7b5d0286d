"""KafkaSource's commit results, without a broker: a refused commit (asynchronous, reported by
librdkafka's on_commit; or synchronous) names its partitions to the loop so the ledger commits
them again; "nothing to commit" and accepted commits name none."""

from __future__ import annotations

import asyncio

from confluent_kafka import KafkaError, TopicPartition

from consumer.source import KafkaSource, Listeners, Partitions, consumer_config


async def _nothing(*_args: object) -> None:
    return None


async def _no_commits(_tps: Partitions) -> list[tuple[str, int, int, str]]:
    return []


def _results(err: KafkaError | None, partitions: list[TopicPartition]) -> list[Partitions]:
    async def main() -> list[Partitions]:
        refused: list[Partitions] = []
        source = KafkaSource(
            consumer_config("127.0.0.1:9", "g", {}),
            ["t"],
            asyncio.get_running_loop(),
            Listeners(_nothing, _no_commits, _nothing, refused.append),
            revoke_timeout=1.0,
        )
        source._commit_result(err, partitions)
        await asyncio.sleep(0.01)  # the hand-over to the loop is call_soon_threadsafe
        await source.close()
        return refused

    return asyncio.run(main())


def test_a_refused_commit_names_its_partitions_to_the_loop() -> None:
    refused = _results(
        KafkaError(KafkaError.REBALANCE_IN_PROGRESS),
        [TopicPartition("t", 0, 5), TopicPartition("t", 3, 9)],
    )
    assert refused == [[("t", 0), ("t", 3)]]


def test_accepted_commits_and_nothing_to_commit_name_none() -> None:
    assert _results(None, [TopicPartition("t", 0, 5)]) == []
    assert _results(KafkaError(KafkaError._NO_OFFSET), [TopicPartition("t", 0, 5)]) == []
