"""The budget book: the same verdicts from the same log, never more than the budget, never a
record counted twice, nothing denied while the budget still fits it."""

from __future__ import annotations

import random

import pytest

from consumer.policy.budget import Book, Claim

CYCLE = "2026-12-01T00:00:00Z"


def claim(
    records: list[tuple[int, int]],
    *,
    partition: int = 0,
    member: str = "a",
    seq: int = 1,
    limit: int = 10,
    cycle: str = CYCLE,
) -> Claim:
    return Claim("web", cycle, limit, "t", partition, tuple(records), member, seq)


def test_records_are_granted_while_they_fit_then_the_cycle_is_exhausted() -> None:
    book = Book()
    assert book.apply(claim([(0, 4), (1, 4)])) == (True, True)
    # 8 used: a record of 3 does not fit, and nothing after it is granted, even one that would
    assert book.apply(claim([(2, 3), (3, 1)], partition=1)) == (False, False)
    assert book.apply(claim([(4, 1)])) == (False,)
    count = book.count("web", CYCLE)
    assert count is not None and (count.granted, count.exhausted) == (8, True)


def test_a_record_read_again_keeps_its_first_verdict_and_counts_once() -> None:
    book = Book()
    assert book.apply(claim([(0, 1), (1, 1), (2, 1)], limit=2)) == (True, True, False)
    # another member owns the partition now and reads from offset 1 again
    assert book.apply(claim([(1, 1), (2, 1), (3, 1)], member="b", limit=2)) == (True, False, False)
    count = book.count("web", CYCLE)
    assert count is not None and count.granted == 2
    assert book.known(("web", CYCLE, "t", 0), 1) is True
    assert book.known(("web", CYCLE, "t", 0), 2) is False
    assert book.known(("web", CYCLE, "t", 0), 4) is None


def test_a_new_cycle_starts_fresh_and_destinations_are_apart() -> None:
    book = Book()
    assert book.apply(claim([(0, 10)])) == (True,)
    assert book.apply(claim([(1, 1)])) == (False,)
    assert book.apply(claim([(1, 1)], cycle="2027-01-01T00:00:00Z")) == (True,)
    other = Claim("ios", CYCLE, 10, "t", 0, ((5, 3),), "a", 9)
    assert book.apply(other) == (True,)


def test_a_zero_budget_grants_nothing() -> None:
    assert Book().apply(claim([(0, 1)], limit=0)) == (False,)


def test_claims_round_trip_and_foreign_values_are_ignored() -> None:
    original = claim([(3, 1), (7, 2)], member="m-1", seq=42)
    assert Claim.decode(original.encode()) == original
    for junk in (b"", b"not json", b'{"d": "web"}', b"[1, 2]", b'{"d":1,"c":2,"l":"x"}'):
        assert Claim.decode(junk) is None


@pytest.mark.parametrize("seed", range(5))
def test_any_interleaving_of_members_and_redeliveries_stays_within_the_budget(seed: int) -> None:
    """Members claim partitions' records in random chunks, take partitions over and read from
    an earlier offset again; replayed in log order, every record is counted once, grants never
    pass the limit, and no record is denied while the budget had room for it."""
    rng = random.Random(seed)
    limit = 300
    events = {(p, o): rng.choice((1, 1, 1, 2)) for p in range(4) for o in range(200)}
    log: list[Claim] = []
    position = dict.fromkeys(range(4), 0)
    seq = 0
    while any(position[p] < 200 for p in range(4)):
        p = rng.choice([p for p in range(4) if position[p] < 200])
        if rng.random() < 0.2:  # a rebalance: the next owner starts a little earlier
            position[p] = max(0, position[p] - rng.randint(1, 15))
        size = rng.randint(1, 12)
        records = [(o, events[(p, o)]) for o in range(position[p], min(200, position[p] + size))]
        position[p] += size
        seq += 1
        log.append(claim(records, partition=p, member=rng.choice("abc"), seq=seq, limit=limit))
    book, replay = Book(), Book()
    first_verdict: dict[tuple[int, int], bool] = {}
    for entry in log:
        verdicts = book.apply(entry)
        assert replay.apply(entry) == verdicts  # the same log, the same verdicts
        for (offset, _), verdict in zip(entry.records, verdicts, strict=True):
            first = first_verdict.setdefault((entry.partition, offset), verdict)
            assert first == verdict  # read again, decided the same
    granted = sum(events[r] for r, v in first_verdict.items() if v)
    count = book.count("web", CYCLE)
    assert count is not None and count.granted == granted <= limit
    # nothing was denied early: the first denied record did not fit what was left
    assert count.exhausted
    assert limit - granted < 2
