"""The member table: precedence, refutation, tombstones, probe order."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from trio_swim.membership import (
    Change,
    MemberTable,
    Node,
    Refused,
    Refute,
    Status,
    supersedes,
)

ME = "10.0.0.1:1"
OTHERS = [f"10.0.0.{i}:1" for i in range(2, 6)]


def table(incarnation: int = 0, max_members: int = 100) -> MemberTable:
    return MemberTable(ME, incarnation, max_members=max_members, rng=random.Random(1))


updates = st.tuples(
    st.sampled_from([*OTHERS, ME]),
    st.sampled_from(list(Status)),
    st.integers(min_value=0, max_value=5),
)


def state_after(seq: list[tuple[str, Status, int]]) -> dict[str, tuple[Status, int]]:
    t = table()
    for address, status, incarnation in seq:
        t.apply(address, status, incarnation, now=0.0)
    return {n.address: (n.status, n.incarnation) for n in t.nodes() if n.address != ME}


@settings(max_examples=300)
@given(st.lists(updates, max_size=30), st.randoms(use_true_random=False))
def test_any_delivery_order_gives_the_same_table(
    seq: list[tuple[str, Status, int]], rnd: random.Random
) -> None:
    shuffled = list(seq)
    rnd.shuffle(shuffled)
    assert state_after(seq) == state_after(shuffled)


@given(st.lists(updates, max_size=30))
def test_duplicates_change_nothing(seq: list[tuple[str, Status, int]]) -> None:
    assert state_after(seq) == state_after(seq + seq)


@given(
    st.sampled_from(list(Status)),
    st.integers(0, 5),
    st.sampled_from(list(Status)),
    st.integers(0, 5),
)
def test_precedence_is_a_strict_order(s1: Status, i1: int, s2: Status, i2: int) -> None:
    a, b = Node("x:1", s1, i1), Node("x:1", s2, i2)
    assert not (supersedes(s1, i1, b) and supersedes(s2, i2, a))
    if (s1, i1) != (s2, i2):
        assert supersedes(s1, i1, b) or supersedes(s2, i2, a)


def test_precedence_rules_of_the_design() -> None:
    def beats(s1: Status, i1: int, s2: Status, i2: int) -> bool:
        return supersedes(s1, i1, Node("x:1", s2, i2))

    assert beats(Status.ALIVE, 2, Status.SUSPECT, 1)
    assert not beats(Status.ALIVE, 1, Status.SUSPECT, 1)
    assert beats(Status.SUSPECT, 1, Status.ALIVE, 1)
    assert not beats(Status.SUSPECT, 1, Status.SUSPECT, 1)
    assert beats(Status.SUSPECT, 2, Status.SUSPECT, 1)
    assert beats(Status.DEAD, 1, Status.SUSPECT, 1)
    assert beats(Status.DEAD, 3, Status.ALIVE, 1)
    assert not beats(Status.DEAD, 1, Status.ALIVE, 2)
    assert beats(Status.ALIVE, 3, Status.DEAD, 2)  # a member back from the dead
    assert beats(Status.LEFT, 1, Status.DEAD, 1)


def test_new_member_and_change_are_reported() -> None:
    t = table()
    first = t.apply(OTHERS[0], Status.ALIVE, 1, 0.0)
    assert first == Change(Node(OTHERS[0], Status.ALIVE, 1), None)
    second = t.apply(OTHERS[0], Status.SUSPECT, 1, 0.0)
    assert isinstance(second, Change)
    assert second.previous == Node(OTHERS[0], Status.ALIVE, 1)
    assert t.apply(OTHERS[0], Status.ALIVE, 1, 0.0) is Refused.STALE


def test_suspicion_of_self_is_refuted_with_a_higher_incarnation() -> None:
    t = table(incarnation=7)
    assert t.apply(ME, Status.SUSPECT, 6, 0.0) is Refused.STALE
    result = t.apply(ME, Status.SUSPECT, 7, 0.0)
    assert result == Refute(Node(ME, Status.ALIVE, 8))
    assert t.me.incarnation == 8
    assert t.apply(ME, Status.DEAD, 20, 0.0) == Refute(Node(ME, Status.ALIVE, 21))
    # An ALIVE record from an earlier life with a higher incarnation is outbid.
    assert t.apply(ME, Status.ALIVE, 30, 0.0) == Refute(Node(ME, Status.ALIVE, 31))
    assert t.apply(ME, Status.ALIVE, 31, 0.0) is Refused.STALE


def test_a_leaving_member_does_not_refute() -> None:
    t = table(incarnation=3)
    assert t.leave() == Node(ME, Status.LEFT, 3)
    assert t.apply(ME, Status.DEAD, 3, 0.0) is Refused.STALE


def test_table_is_bounded() -> None:
    t = table(max_members=3)
    assert isinstance(t.apply(OTHERS[0], Status.ALIVE, 0, 0.0), Change)
    assert isinstance(t.apply(OTHERS[1], Status.ALIVE, 0, 0.0), Change)
    t.verify(OTHERS[0])
    t.verify(OTHERS[1])
    assert t.apply(OTHERS[2], Status.ALIVE, 0, 0.0) is Refused.TABLE_FULL
    assert len(t) == 3


def test_a_full_table_makes_room_by_forgetting_the_oldest_member_never_heard_from() -> None:
    t = table(max_members=4)
    for other in OTHERS[:3]:
        t.apply(other, Status.ALIVE, 0, 0.0)
    t.verify(OTHERS[0])
    change = t.apply(OTHERS[3], Status.ALIVE, 0, 0.0)
    assert isinstance(change, Change)
    assert change.evicted == Node(OTHERS[1], Status.ALIVE, 0)
    assert t.get(OTHERS[1]) is None
    assert t.get(OTHERS[0]) is not None
    assert len(t) == 4


def test_tombstone_refuses_stale_news_until_it_expires() -> None:
    t = table()
    t.apply(OTHERS[0], Status.DEAD, 4, 0.0)
    assert t.remove(OTHERS[0], now=10.0, remember_for=5.0) == Node(OTHERS[0], Status.DEAD, 4)
    assert t.get(OTHERS[0]) is None
    assert t.apply(OTHERS[0], Status.ALIVE, 4, 11.0) is Refused.TOMBSTONE
    assert t.tombstone(OTHERS[0], 11.0) == 4
    # A genuinely newer incarnation is a return, not a resurrection.
    assert isinstance(t.apply(OTHERS[0], Status.ALIVE, 5, 12.0), Change)
    t.remove(OTHERS[0], now=20.0, remember_for=5.0)
    assert isinstance(t.apply(OTHERS[0], Status.ALIVE, 0, 25.0), Change)  # expired


def test_tombstones_are_capped() -> None:
    t = table(max_members=3)
    for i, address in enumerate(OTHERS * 2):
        t.apply(address, Status.DEAD, i, 0.0)
        t.remove(address, now=0.0, remember_for=100.0)
    remembered = [a for a in OTHERS if t.tombstone(a, 1.0) is not None]
    assert len(remembered) == 3


def test_probe_order_visits_every_live_member_once_per_round() -> None:
    t = table()
    for address in OTHERS:
        t.apply(address, Status.ALIVE, 0, 0.0)
    t.apply(OTHERS[3], Status.DEAD, 0, 0.0)
    for _ in range(5):
        round_ = [t.next_probe_target() for _ in range(3)]
        assert sorted(a for a in round_ if a) == sorted(OTHERS[:3])


def test_probe_order_is_empty_when_alone() -> None:
    assert table().next_probe_target() is None


@given(st.integers(0, 6), st.integers(0, 4))
def test_random_live_picks_distinct_live_members(count: int, excluded: int) -> None:
    t = table()
    for address in OTHERS:
        t.apply(address, Status.ALIVE, 0, 0.0)
    exclude = frozenset(OTHERS[:excluded])
    chosen = t.random_live(count, exclude)
    assert len(chosen) == min(count, len(OTHERS) - excluded)
    assert len(set(chosen)) == len(chosen)
    assert not set(chosen) & exclude
    assert ME not in chosen
