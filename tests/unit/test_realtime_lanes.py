"""Which lane a realtime record goes to: one key always the same lane (its order), and every
lane in use whatever partitions a member owns."""

from __future__ import annotations

import zlib

from consumer.sink.realtime import lane_for

LANES = 32


def _keys_of_odd_partitions(partitions: int = 6) -> list[bytes]:
    """Keys librdkafka's default partitioner (CRC32 of the key) puts on odd partitions: what a
    member of a two-member group may own."""
    keys = (f"user-{i:05d}".encode() for i in range(4000))
    return [key for key in keys if zlib.crc32(key) % partitions % 2 == 1]


def test_a_key_keeps_its_lane() -> None:
    for key in (b"user-1", b"anon-7", "ünïcode".encode()):
        assert len({lane_for(key, offset, LANES) for offset in range(50)}) == 1


def test_a_member_owning_only_odd_partitions_uses_every_lane() -> None:
    keys = _keys_of_odd_partitions()
    assert len(keys) > 1000
    assert {lane_for(key, 0, LANES) for key in keys} == set(range(LANES))


def test_keyless_records_spread_by_offset() -> None:
    assert {lane_for(None, offset, LANES) for offset in range(LANES)} == set(range(LANES))
    assert {lane_for(b"", offset, LANES) for offset in range(LANES)} == set(range(LANES))
