"""Failure recovery: dead-member retries with backoff, removal, tombstones,
partition healing and rejoin after a restart, on the simulated network."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from trio_swim import Config, Member, MemberRemoved, Node, Status, StatusChanged
from trio_swim.membership import MemberTable, Refused
from trio_swim.testing import SimNetwork, seed_trio_scheduler, wait_converged
from trio_swim.wire import Codec, Message, Packet, Ping, Sync, Update, WireStatus

from simcluster import Recorder, address, converged, open_cluster, status_seen, wait_until

PERIOD = Config().period
TICK = 1e-6


class WireTap:
    """Records every datagram sent to the watched addresses, delivered or not.

    It wraps the network's delivery hook, so it sees what members send to a
    crashed or departed address too.
    """

    def __init__(self, net: SimNetwork, monkeypatch: pytest.MonkeyPatch, watched: set[str]) -> None:
        self.sent: list[tuple[float, str, str, Packet]] = []
        self._codec = Codec(Config().cluster_name, 65_000)
        carry = net._carry

        def tap(source: object, target: str, data: bytes) -> None:
            if target in watched:
                packet = self._codec.decode(data)
                assert isinstance(packet, Packet)
                self.sent.append((trio.current_time(), packet.sender, target, packet))
            carry(source, target, data)  # type: ignore[arg-type]

        monkeypatch.setattr(net, "_carry", tap)

    def packets(self, sender: str, target: str, after: float) -> list[tuple[float, Packet]]:
        """Packets from ``sender`` to ``target`` sent after ``after``."""
        return [(t, p) for t, s, d, p in self.sent if s == sender and d == target and t > after]

    def pings(self, sender: str, target: str, after: float) -> list[tuple[float, Packet]]:
        """Packets with a Ping from ``sender`` to ``target`` sent after ``after``."""
        return [
            (t, p)
            for t, p in self.packets(sender, target, after)
            if any(isinstance(m, Ping) for m in p.messages)
        ]


def first_event(
    recorder: Recorder, who: str, match: Callable[[object], bool]
) -> tuple[float, object]:
    """Time and event of the first event of ``who`` that ``match`` accepts."""
    for t, w, e in recorder.events:
        if w == who and match(e):
            return t, e
    raise AssertionError(f"no matching event at {who}")


def changed_to(target: str, status: Status) -> Callable[[object], bool]:
    """Matches StatusChanged of ``target`` to ``status``."""
    return lambda e: (
        isinstance(e, StatusChanged) and e.node.address == target and e.status is status
    )


def removed(target: str) -> Callable[[object], bool]:
    """Matches MemberRemoved of ``target``."""
    return lambda e: isinstance(e, MemberRemoved) and e.node.address == target


def record_of(member: Member, target: str) -> Node | None:
    """``member``'s record of ``target`` (None: not in its table)."""
    for node in member.members():
        if node.address == target:
            return node
    return None


def datagram(sender: str, messages: list[Message]) -> bytes:
    """A packet as ``sender`` would send it."""
    return Codec(Config().cluster_name, Config().max_packet_bytes).encode(sender, messages)


# ------------------------------------------------------------ retry and removal


@pytest.mark.parametrize(
    ("settings", "ping_periods", "removal_period"),
    [
        # Ten retries, 1, 2, 4 ... 64, 64 ... periods apart, then removal.
        ({}, [1, 3, 7, 15, 31, 63, 127, 191, 255, 319], 383),
        ({"dead_retry_limit": 4, "dead_retry_max_periods": 4}, [1, 3, 7, 11], 15),
        ({"dead_retry_limit": 0}, [], 1),
    ],
    ids=["defaults", "limit-4-cap-4", "limit-0"],
)
async def test_dead_member_is_retried_with_backoff_then_removed(
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    settings: dict[str, Any],
    ping_periods: list[int],
    removal_period: int,
) -> None:
    # Two members, so no one relays probes: every ping to the dead member
    # after its death is a retry.
    seed_trio_scheduler(11)
    net = SimNetwork(seed=11)
    tap = WireTap(net, monkeypatch, {address(2)})
    async with open_cluster(net, 1, **settings) as (observer,), trio.open_nursery() as nursery:
        recorder = Recorder()
        await recorder.watch(nursery, [observer])
        async with open_cluster(net, 1, first_port=2, join=address(1), **settings) as (victim,):
            await wait_converged(observer, victim, timeout=5)
            net.crash(victim.address)
        await wait_until(lambda: record_of(observer, address(2)) is None, within=2000 * PERIOD)
        dead_at, _ = first_event(recorder, address(1), changed_to(address(2), Status.DEAD))
        removed_at, event = first_event(recorder, address(1), removed(address(2)))
        assert isinstance(event, MemberRemoved)
        assert event.node == Node(address(2), Status.DEAD, 0)
        assert removed_at == pytest.approx(dead_at + removal_period * PERIOD, abs=TICK)

        retries = tap.pings(address(1), address(2), after=dead_at)
        assert [t - dead_at for t, _ in retries] == pytest.approx(
            [k * PERIOD for k in ping_periods], abs=TICK
        )
        # Each retry tells the member it is held DEAD, so a live one can refute.
        for _, packet in retries:
            assert Update(address(2), WireStatus.DEAD, 0, address(1)) in packet.messages

        # Nothing more is sent to it once it is forgotten.
        await trio.sleep(200 * PERIOD)
        assert tap.packets(address(1), address(2), after=removed_at) == []
        nursery.cancel_scope.cancel()


async def test_every_member_removes_a_crashed_one_after_its_retries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seed_trio_scheduler(12)
    net = SimNetwork(seed=12)
    settings: dict[str, Any] = {"dead_retry_limit": 3, "dead_retry_max_periods": 2}
    async with open_cluster(net, 6, **settings) as members, trio.open_nursery() as nursery:
        await wait_converged(*members, timeout=10)
        recorder = Recorder()
        survivors = members[:5]
        await recorder.watch(nursery, survivors)
        victim = members[5].address
        net.crash(victim)
        await wait_until(
            lambda: all(record_of(m, victim) is None for m in survivors), within=100 * PERIOD
        )
        for member in survivors:
            dead_at, _ = first_event(recorder, member.address, changed_to(victim, Status.DEAD))
            removed_at, _ = first_event(recorder, member.address, removed(victim))
            # Retries 1, 1 + 2 and 1 + 2 + 2 periods after death; removal 2 later.
            assert removed_at == pytest.approx(dead_at + 7 * PERIOD, abs=TICK)
            assert len(member.members()) == 5
            assert len(member.healthy_members()) == 5
        nursery.cancel_scope.cancel()


async def test_left_member_is_removed_after_left_removal_seconds_without_retries(
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_trio_scheduler(13)
    net = SimNetwork(seed=13)
    tap = WireTap(net, monkeypatch, {address(2)})
    # A DEAD member would be gone 3 periods after the verdict; a LEFT one
    # waits left_removal_seconds (20 periods) and is never retried.
    settings: dict[str, Any] = {"left_removal_seconds": 5.0, "dead_retry_limit": 1}
    async with open_cluster(net, 1, **settings) as (observer,), trio.open_nursery() as nursery:
        recorder = Recorder()
        await recorder.watch(nursery, [observer])
        async with open_cluster(net, 1, first_port=2, join=address(1), **settings) as (leaver,):
            await wait_converged(observer, leaver, timeout=5)
        await wait_until(lambda: record_of(observer, address(2)) is None, within=30)
        left_at, _ = first_event(recorder, address(1), changed_to(address(2), Status.LEFT))
        removed_at, event = first_event(recorder, address(1), removed(address(2)))
        assert isinstance(event, MemberRemoved)
        assert event.node.status is Status.LEFT
        assert removed_at == pytest.approx(left_at + 5.0, abs=TICK)
        changes = [e.status for _, _, e in recorder.events if isinstance(e, StatusChanged)]
        assert changes == [Status.ALIVE, Status.LEFT]
        assert tap.packets(address(1), address(2), after=left_at) == []
        nursery.cancel_scope.cancel()


# ------------------------------------------------------------------ tombstones


def test_tombstones_are_capped_oldest_first_and_expire() -> None:
    table = MemberTable("10.0.0.1:1", 0, max_members=4, rng=random.Random(1))
    others = [f"10.0.0.{i}:1" for i in range(2, 12)]
    for i, other in enumerate(others):
        table.apply(other, Status.DEAD, 7, now=float(i))
        table.remove(other, now=float(i), remember_for=100.0)
    remembered = [a for a in others if table.tombstone(a, now=10.0) is not None]
    assert remembered == others[-4:]
    assert table.tombstone(others[-1], now=10.0) == 7
    # A stale record of a remembered member is refused; a forgotten one is news again.
    assert table.apply(others[-1], Status.ALIVE, 7, now=10.0) is Refused.TOMBSTONE
    assert table.get(others[-1]) is None
    assert not isinstance(table.apply(others[0], Status.ALIVE, 0, now=10.0), Refused)
    # Tombstones expire remember_for seconds after removal.
    assert table.tombstone(others[-1], now=9.0 + 100.0 - 0.5) == 7
    assert table.tombstone(others[-1], now=9.0 + 100.0) is None
    assert not isinstance(table.apply(others[-1], Status.ALIVE, 0, now=110.0), Refused)


async def test_removed_member_is_not_resurrected_by_stale_news(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seed_trio_scheduler(14)
    net = SimNetwork(seed=14)
    settings: dict[str, Any] = {
        "dead_retry_limit": 2,
        "dead_retry_max_periods": 2,
        "sync_interval_seconds": 1.0,
    }
    async with open_cluster(net, 4, **settings) as members, trio.open_nursery() as nursery:
        await wait_converged(*members, timeout=10)
        victim = members[3].address
        net.crash(victim)
        survivors = members[:3]
        await wait_until(
            lambda: all(record_of(m, victim) is None for m in survivors), within=100 * PERIOD
        )
        recorder = Recorder()
        await recorder.watch(nursery, survivors)
        target, relay = survivors[0], survivors[1].address
        for status in WireStatus:
            stale = Update(victim, status, 0, relay)
            target.receive_datagram(datagram(relay, [stale]))
            target.receive_datagram(datagram(relay, [Sync(False, [stale])]))
        # Stale news reached one member: it must neither take it nor pass it on.
        await trio.sleep(20 * PERIOD)
        assert all(record_of(m, victim) is None for m in survivors)
        assert [e for _, _, e in recorder.events] == []

        # News from a later life of the member is a genuine return.
        target.receive_datagram(datagram(relay, [Update(victim, WireStatus.ALIVE, 1, relay)]))
        assert record_of(target, victim) == Node(victim, Status.ALIVE, 1)
        await trio.sleep(TICK)  # let the recorder take the event
        _, event = first_event(recorder, target.address, changed_to(victim, Status.ALIVE))
        assert isinstance(event, StatusChanged)
        assert event.previous is None
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------------- healing


@pytest.mark.parametrize(
    ("longer", "cap", "bound"),
    [
        # Healed as soon as both sides hold the other DEAD: the next retry is
        # at most a period away.
        (0, 64, 2),
        # Healed long after (but before removal): the retries are
        # dead_retry_max_periods apart by then; the first to arrive heals the cut.
        (200, 8, 8 + 1),
    ],
)
async def test_cut_off_member_and_cluster_take_each_other_back(
    autojump_clock: trio.testing.MockClock, longer: int, cap: int, bound: int
) -> None:
    # No periodic state sync: the retries alone must heal the cut.
    seed_trio_scheduler(15)
    net = SimNetwork(seed=15)
    settings: dict[str, Any] = {
        "sync_interval_seconds": 0,
        "dead_retry_max_periods": cap,
        "dead_retry_limit": 64,
    }
    async with (
        open_cluster(net, 5, **settings) as members,
        trio.open_nursery() as nursery,
    ):
        await wait_converged(*members, timeout=10)
        cut, rest = members[4], members[:4]
        net.partition([cut.address], [m.address for m in rest])

        def split() -> bool:
            return all(status_seen(m, cut.address) is Status.DEAD for m in rest) and all(
                status_seen(cut, m.address) is Status.DEAD for m in rest
            )

        await wait_until(split, within=300 * PERIOD, step=PERIOD)
        await trio.sleep(longer * PERIOD)
        recorder = Recorder()
        await recorder.watch(nursery, members)
        net.heal()
        took = await wait_until(converged(members), within=100 * PERIOD, step=PERIOD)
        assert took <= bound * PERIOD
        # Each side refuted the other's verdict with a higher incarnation ...
        assert all(m.node.incarnation == 1 for m in members)
        # ... and every member reported the return.
        for member in rest:
            first_event(recorder, member.address, changed_to(cut.address, Status.ALIVE))
            first_event(recorder, cut.address, changed_to(member.address, Status.ALIVE))
        nursery.cancel_scope.cancel()


async def test_dead_record_older_than_a_refutation_is_still_corrected(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Member 1 holds 3 DEAD at incarnation 0; meanwhile 3 refuted a suspicion
    # on its side (incarnation 1), news that never reached 1. When the cut
    # heals, 1's retries tell 3 "DEAD at 0": old news that 3 does not refute
    # again, so 3 must answer with its current record.
    # Retries every period, so that the wait after heal() is the correction alone.
    seed_trio_scheduler(16)
    net = SimNetwork(seed=16)
    settings: dict[str, Any] = {
        "sync_interval_seconds": 0,
        "dead_retry_max_periods": 1,
        "dead_retry_limit": 64,
    }
    async with open_cluster(net, 3, **settings) as (one, two, three):
        await wait_converged(one, two, three, timeout=10)
        net.partition([one.address], [two.address, three.address])

        def split() -> bool:
            return all(status_seen(one, m.address) is Status.DEAD for m in (two, three)) and all(
                status_seen(m, one.address) is Status.DEAD for m in (two, three)
            )

        await wait_until(split, within=300 * PERIOD, step=PERIOD)
        suspicion = Update(three.address, WireStatus.SUSPECT, 0, two.address)
        three.receive_datagram(datagram(two.address, [suspicion]))
        assert three.node.incarnation == 1
        await wait_until(
            lambda: record_of(two, three.address) == Node(three.address, Status.ALIVE, 1),
            within=5 * PERIOD,
        )
        # Let every piggybacked copy of the refutation run out.
        await trio.sleep(40 * PERIOD)
        assert record_of(one, three.address) == Node(three.address, Status.DEAD, 0)
        net.heal()
        took = await wait_until(converged([one, two, three]), within=40 * PERIOD, step=PERIOD)
        assert took <= 2 * PERIOD
        assert record_of(one, three.address) == Node(three.address, Status.ALIVE, 1)


async def test_partition_of_100_into_halves_heals_by_itself(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The cut lasts 60 periods and until each half holds the whole other half
    # DEAD. Measured over seeds 1-10: the split is complete 81-176 periods
    # after the cut; one cluster again within 1 period after heal().
    seed_trio_scheduler(17)
    net = SimNetwork(seed=17)
    n = 100
    async with open_cluster(net, n) as members:
        await wait_until(converged(members), within=30, step=PERIOD)
        half_a = {m.address for m in members[: n // 2]}
        half_b = {m.address for m in members[n // 2 :]}
        net.partition(half_a, half_b)

        def other_half_dead() -> bool:
            for m in members:
                other = half_b if m.address in half_a else half_a
                statuses = [node.status for node in m.members() if node.address in other]
                if len(statuses) != len(other) or any(s is not Status.DEAD for s in statuses):
                    return False
            return True

        await trio.sleep(60 * PERIOD)
        await wait_until(other_half_dead, within=300 * PERIOD, step=PERIOD)
        assert all(len(m.healthy_members()) == n // 2 for m in members)
        net.heal()
        took = await wait_until(converged(members), within=100 * PERIOD, step=PERIOD)
        assert took <= 5 * PERIOD
        assert all(len(m.members()) == n for m in members)


# --------------------------------------------------------------------- restart


@pytest.mark.parametrize("forgotten", [False, True], ids=["held-dead", "removed"])
async def test_restarted_member_rejoins_above_its_old_incarnation(
    autojump_clock: trio.testing.MockClock, forgotten: bool
) -> None:
    seed_trio_scheduler(18)
    net = SimNetwork(seed=18)
    limit = 2 if forgotten else 10
    restart = Config(
        listen_port=5, initial_hosts=[address(1)], dead_retry_limit=limit, sync_interval_seconds=0
    )
    async with open_cluster(net, 4, dead_retry_limit=limit, sync_interval_seconds=0) as survivors:
        async with net.open_member(restart, incarnation=50) as first_life:
            everyone = [*survivors, first_life]
            await wait_converged(*everyone, timeout=10)
            net.crash(first_life.address)
        old = Node(address(5), Status.DEAD, 50)
        if forgotten:
            await wait_until(
                lambda: all(record_of(m, address(5)) is None for m in survivors),
                within=100 * PERIOD,
            )
        else:
            await wait_until(
                lambda: all(record_of(m, address(5)) == old for m in survivors),
                within=60 * PERIOD,
            )
        # A new process on the same address remembers nothing.
        async with net.open_member(restart, incarnation=0) as second_life:
            everyone = [*survivors, second_life]
            took = await wait_until(converged(everyone), within=20 * PERIOD, step=PERIOD)
            assert took <= 3 * PERIOD
            assert second_life.node.incarnation > 50
            for m in survivors:
                assert record_of(m, address(5)) == second_life.node


async def test_halves_that_removed_each_other_reunite_through_their_seed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # With one retry, each side removes the other soon after the split; only
    # the seed re-check can bring them back together.
    net = SimNetwork(seed=21)
    async with open_cluster(net, 6, dead_retry_limit=1, lifeguard=False) as members:
        await wait_until(lambda: all(len(m.healthy_members()) == 6 for m in members), within=10)
        left, right = members[:3], members[3:]
        net.partition([m.address for m in left], [m.address for m in right])
        await wait_until(lambda: all(len(m.members()) == 3 for m in members), within=120)
        net.heal()
        took = await wait_until(
            lambda: all(len(m.healthy_members()) == 6 for m in members), within=120
        )
        assert took <= 1.5 * 30 + 5


async def test_a_refuted_rumour_in_a_state_exchange_is_answered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(seed=22)
    async with open_cluster(net, 2) as (a, b):
        await wait_converged(a, b, timeout=5)
        b.receive_datagram(
            Codec("trio-swim", 1400).encode(
                a.address, [Update(b.address, WireStatus.SUSPECT, 0, a.address)]
            )
        )
        assert b.node.incarnation == 1
        # A state exchange still carrying the refuted suspicion gets b's record back.
        stale = Sync(False, [Update(b.address, WireStatus.SUSPECT, 0, a.address)])
        await trio.sleep(0.01)
        sent = b.statistics().packets_sent
        b.receive_datagram(Codec("trio-swim", 1400).encode(a.address, [stale]))
        await trio.testing.wait_all_tasks_blocked()
        assert b.statistics().packets_sent == sent + 1  # the answer, sent at once
        await trio.sleep(0.01)
        assert record_of(a, b.address) == Node(b.address, Status.ALIVE, 1)
