"""The piggyback queue and broadcast de-duplication."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trio_swim.dissemination import PiggybackQueue, SeenSet, retransmit_limit


def test_retransmit_limit_formula() -> None:
    assert retransmit_limit(4, 1) == 4
    assert retransmit_limit(4, 9) == 4
    assert retransmit_limit(4, 10) == 8
    assert retransmit_limit(4, 99) == 8
    assert retransmit_limit(4, 100) == 12
    assert retransmit_limit(3, 1000) == 12


def test_each_message_is_sent_limit_times_then_dropped() -> None:
    q: PiggybackQueue[str] = PiggybackQueue(10)
    q.put("a", "A", 10)
    sent = [q.take(100, limit=3) for _ in range(5)]
    assert sent == [["A"], ["A"], ["A"], [], []]
    assert len(q) == 0


def test_fewest_sent_first_and_within_budget() -> None:
    q: PiggybackQueue[str] = PiggybackQueue(10)
    q.put("a", "A", 40)
    assert q.take(100, limit=5) == ["A"]
    q.put("b", "B", 40)
    q.put("c", "C", 40)
    # B and C have never been sent: they go before A, and A no longer fits.
    assert q.take(100, limit=5) == ["B", "C"]
    assert q.take(100, limit=5) == ["A", "B"]


def test_put_again_replaces_and_restarts_the_count() -> None:
    q: PiggybackQueue[str] = PiggybackQueue(10)
    q.put("a", "old", 10)
    q.take(100, limit=2)
    q.put("a", "new", 10)
    assert q.sends("a") == 0
    assert q.take(100, limit=2) == ["new"]
    assert q.take(100, limit=2) == ["new"]
    assert q.take(100, limit=2) == []


def test_queue_is_bounded_by_evicting_the_most_sent() -> None:
    q: PiggybackQueue[str] = PiggybackQueue(2)
    q.put("a", "A", 10)
    q.take(100, limit=5)
    q.put("b", "B", 10)
    q.put("c", "C", 10)
    assert len(q) == 2
    assert "a" not in q


@given(
    st.lists(st.integers(8, 300), min_size=1, max_size=60),
    st.integers(300, 1400),
    st.integers(1, 12),
)
def test_every_message_is_sent_exactly_limit_times_within_budget(
    sizes: list[int], budget: int, limit: int
) -> None:
    q: PiggybackQueue[int] = PiggybackQueue(100)
    for i, size in enumerate(sizes):
        q.put(i, i, size)
    sends = [0] * len(sizes)
    for _ in range(len(sizes) * limit + 1):
        taken = q.take(budget, limit)
        assert sum(sizes[i] for i in taken) <= budget
        assert len(set(taken)) == len(taken)
        for i in taken:
            sends[i] += 1
    assert sends == [limit] * len(sizes)
    assert len(q) == 0


def test_shrinking_limit_drops_exhausted_messages() -> None:
    q: PiggybackQueue[str] = PiggybackQueue(10)
    q.put("a", "A", 10)
    q.take(100, limit=8)
    q.take(100, limit=8)
    assert q.take(100, limit=2) == []
    assert len(q) == 0


def test_seen_set_dedups_expires_and_is_bounded() -> None:
    seen = SeenSet(max_entries=2, ttl=10.0)
    assert seen.first_time("x", 0.0)
    assert not seen.first_time("x", 5.0)
    assert seen.first_time("x", 10.0)  # expired
    assert seen.first_time("y", 11.0)
    assert seen.first_time("z", 12.0)
    assert len(seen) == 2
