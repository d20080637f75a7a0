"""Whole clusters on the simulated network, in virtual time."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from trio_swim import (
    BroadcastReceived,
    BroadcastTooLarge,
    Config,
    EventsMissed,
    Status,
    StatusChanged,
)
from trio_swim.testing import SimNetwork, seed_trio_scheduler, wait_converged
from trio_swim.wire import Codec, Update, WireStatus

from simcluster import (
    Recorder,
    address,
    converged,
    everyone_sees,
    open_cluster,
    status_seen,
    wait_until,
    watched_cluster,
)

PERIOD = 0.25


async def test_fifty_members_converge_in_logarithmic_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(seed=1)
    async with open_cluster(net, 50) as members:
        took = await wait_until(converged(members), within=30)
        # Each joiner syncs with the seed and is gossiped onward: O(log n) periods.
        assert took <= 4 * math.log2(50) * PERIOD


async def test_a_crashed_member_is_declared_dead_by_all(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(seed=2)
    async with watched_cluster(net, 50, within=30) as (members, recorder):
        victim = members[17].address
        net.crash(victim)
        took = await wait_until(everyone_sees(members, victim, Status.DEAD), within=60)
        assert took < 12.0
        dead_reports = {
            who
            for _, who, e in recorder.events
            if isinstance(e, StatusChanged) and e.node.address == victim and e.status is Status.DEAD
        }
        assert dead_reports == {m.address for m in members} - {victim}


@pytest.mark.parametrize("lifeguard", [True, False])
async def test_dead_is_declared_exactly_one_suspicion_timeout_after_suspect(
    autojump_clock: trio.testing.MockClock, lifeguard: bool
) -> None:
    # Two members: nobody can confirm, so the timeout is the minimum,
    # suspicion_mult x max(1, log10 2) x period = 4 x 1 x 0.25 s, with or without Lifeguard.
    net = SimNetwork(seed=3)
    async with open_cluster(net, 2, lifeguard=lifeguard) as (a, b), trio.open_nursery() as n:
        await wait_converged(a, b, timeout=5)
        recorder = Recorder()
        await recorder.watch(n, [a])
        net.crash(b.address)
        await wait_until(lambda: status_seen(a, b.address) is Status.DEAD, within=30)
        times = {e.status: t for t, _, e in recorder.events if isinstance(e, StatusChanged)}
        assert times[Status.DEAD] - times[Status.SUSPECT] == pytest.approx(4 * PERIOD, abs=1e-9)
        n.cancel_scope.cancel()


async def test_a_suspected_live_member_refutes_and_is_never_declared_dead(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Seeded, and paused for about five periods: it is suspected only if its
    # turn in some member's probe order comes while it is paused (15 seeds
    # in 16 at 1.2 s; about half at 0.6 s), and dies only if the pause
    # outlasts the suspicion.
    seed_trio_scheduler(9)
    net = SimNetwork(seed=9)
    async with watched_cluster(net, 10, within=10) as (members, recorder):
        victim = members[3]
        before = victim.node.incarnation
        net.pause(victim.address, 1.2)  # long enough to be suspected, not to die
        await wait_until(
            lambda: any(status_seen(m, victim.address) is Status.SUSPECT for m in members),
            within=5,
            step=0.01,
        )
        await trio.sleep(20)
        assert victim.node.incarnation > before
        assert everyone_sees(members, victim.address, Status.ALIVE)()
        verdicts = [
            e.status
            for _, _, e in recorder.events
            if isinstance(e, StatusChanged) and e.node.address == victim.address
        ]
        assert Status.SUSPECT in verdicts
        assert Status.DEAD not in verdicts


async def test_suspicion_injected_from_outside_is_refuted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(seed=5)
    async with open_cluster(net, 8) as members:
        await wait_converged(*members, timeout=10)
        target = members[5]
        rumour = Codec("trio-swim", 1400).encode(
            members[1].address,
            [Update(target.address, WireStatus.SUSPECT, target.node.incarnation, address(2))],
        )
        members[0].receive_datagram(rumour)
        assert status_seen(members[0], target.address) is Status.SUSPECT
        await wait_until(everyone_sees(members, target.address, Status.ALIVE), within=5)
        assert target.node.incarnation == 1


async def test_partition_then_heal_restores_one_cluster(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(seed=6)
    async with open_cluster(net, 10) as members:
        await wait_converged(*members, timeout=10)
        left, right = members[:5], members[5:]
        net.partition([m.address for m in left], [m.address for m in right])

        def split() -> bool:
            return all(
                status_seen(a, b.address) is Status.DEAD
                and status_seen(b, a.address) is Status.DEAD
                for a in left
                for b in right
            )

        await wait_until(split, within=60)
        assert all(len(m.healthy_members()) == 5 for m in members)
        net.heal()
        took = await wait_until(converged(members), within=60)
        assert took < 30


async def test_a_broadcast_reaches_all_fifty_exactly_once_under_loss(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Seeded: at 5% loss about one run in thirty leaves one member unreached
    # (epidemic spread reaches everyone with high probability, not always).
    seed_trio_scheduler(8)
    net = SimNetwork(seed=8)
    async with watched_cluster(net, 50, within=30) as (members, recorder):
        net.set_loss(0.05)
        await members[0].broadcast(b"hello, cluster")
        await trio.sleep(30)
        received = [who for _, who, e in recorder.events if isinstance(e, BroadcastReceived)]
        assert sorted(received) == sorted(m.address for m in members[1:])
        assert all(
            e.payload == b"hello, cluster" and e.origin == members[0].address
            for _, _, e in recorder.events
            if isinstance(e, BroadcastReceived)
        )


async def test_many_broadcasts_all_arrive_once(autojump_clock: trio.testing.MockClock) -> None:
    net = SimNetwork(seed=8)
    async with watched_cluster(net, 12, within=10) as (members, recorder):
        for i, m in enumerate(members):
            await m.broadcast(f"from {i}".encode())
        await trio.sleep(20)
        got = sorted(
            (who, e.payload) for _, who, e in recorder.events if isinstance(e, BroadcastReceived)
        )
        expected = sorted(
            (m.address, f"from {i}".encode())
            for i in range(12)
            for m in members
            if m is not members[i]
        )
        assert got == expected


async def test_broadcast_over_the_limit_raises(autojump_clock: trio.testing.MockClock) -> None:
    net = SimNetwork()
    async with net.open_member(Config(listen_port=1, max_broadcast_bytes=10)) as m:
        await m.broadcast(b"x" * 10)
        with pytest.raises(BroadcastTooLarge, match="11 bytes"):
            await m.broadcast(b"x" * 11)


async def test_a_member_that_leaves_is_seen_left_not_dead(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(seed=9)
    async with open_cluster(net, 6) as members:
        await wait_converged(*members, timeout=10)
        async with net.open_member(Config(listen_port=99, initial_hosts=[address(1)])) as leaver:
            everyone = [*members, leaver]
            await wait_converged(*everyone, timeout=10)
            start = trio.current_time()
        assert trio.current_time() - start <= 0.5  # the leave timeout bounds closing
        await wait_until(everyone_sees(members, address(99), Status.LEFT), within=5)
        await trio.sleep(10)
        assert everyone_sees(members, address(99), Status.LEFT)()


async def test_join_returns_how_many_answered(autojump_clock: trio.testing.MockClock) -> None:
    net = SimNetwork(seed=10)
    async with (
        net.open_member(Config(listen_port=1)) as a,
        net.open_member(Config(listen_port=2)) as b,
        net.open_member(Config(listen_port=3)) as c,
    ):
        assert await a.join(b.address, c.address, "127.0.0.1:4") == 2
        await wait_converged(a, b, c, timeout=5)
        assert {n.address for n in b.healthy_members()} == {a.address, b.address, c.address}


async def test_initial_hosts_that_start_later_are_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(seed=11)
    async with net.open_member(Config(listen_port=2, initial_hosts=[address(1)])) as b:
        await trio.sleep(3)
        assert len(b.members()) == 1
        async with net.open_member(Config(listen_port=1)) as a:
            await wait_converged(a, b, timeout=40)


async def test_a_lagging_subscriber_is_told_what_it_missed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(seed=12)
    async with net.open_member(Config(listen_port=1)) as seed:
        slow = seed.events(buffer=3)
        fast = seed.events()
        async with open_cluster(net, 10, first_port=2, join=address(1)) as others:
            await wait_converged(seed, *others, timeout=10)
        await trio.sleep(30)  # let every departure settle
        # At least ten joined and ten departed; the slow stream holds three.
        seen_fast = [fast._buffer.popleft() for _ in range(len(fast._buffer))]
        assert len(seen_fast) >= 20
        got = []
        with trio.move_on_after(1):
            async for event in slow:
                got.append(event)
        assert got[:3] == seen_fast[:3]
        assert got[3:] == [EventsMissed(len(seen_fast) - 3)]


async def test_event_streams_end_when_the_member_closes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork()
    async with net.open_member(Config(listen_port=1)) as m:
        stream = m.events()
    with trio.fail_after(1):
        assert [e async for e in stream] == []


async def test_leaving_open_member_leaves_no_task_running(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(seed=13)
    before = trio.lowlevel.current_statistics().tasks_living
    async with open_cluster(net, 5) as members:
        await wait_converged(*members, timeout=10)
        assert trio.lowlevel.current_statistics().tasks_living > before
    assert trio.lowlevel.current_statistics().tasks_living == before


async def test_closing_one_member_does_not_wait_for_the_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(seed=14)
    async with open_cluster(net, 5) as members:
        await wait_converged(*members, timeout=10)
        start = trio.current_time()
        async with net.open_member(Config(listen_port=50, initial_hosts=[address(1)])):
            await trio.sleep(1)
        assert trio.current_time() - start <= 1.5


async def test_an_exception_in_the_body_comes_out_unwrapped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork()
    with pytest.raises(KeyError, match="mine"):
        async with net.open_member(Config(listen_port=1)):
            raise KeyError("mine")


async def test_garbage_is_counted_and_the_member_carries_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(seed=15)
    async with open_cluster(net, 3) as members:
        await wait_converged(*members, timeout=5)
        m = members[0]
        m.receive_datagram(b"\x00garbage")
        m.receive_datagram(b"x" * 5000)
        m.receive_datagram(Codec("other", 1400).encode(address(7), []))
        bogus = Codec("trio-swim", 1400).encode(
            members[1].address, [Update("not-an-address", WireStatus.ALIVE, 1, "x")]
        )
        m.receive_datagram(bogus)
        stats = m.statistics()
        assert stats.dropped_malformed == 2
        assert stats.dropped_oversized == 1
        assert stats.dropped_foreign_cluster == 1
        assert len(m.members()) == 3
        await trio.sleep(5)
        assert converged(members)()


async def test_address_in_use_is_refused(autojump_clock: trio.testing.MockClock) -> None:
    net = SimNetwork()
    async with net.open_member(Config(listen_port=1)):
        with pytest.raises(OSError, match="in use"):
            async with net.open_member(Config(listen_port=1)):
                pass  # pragma: no cover


async def test_a_member_cancelled_from_outside_still_leaves(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(seed=16)
    async with open_cluster(net, 4) as members:
        await wait_converged(*members, timeout=10)
        with trio.move_on_after(2):
            async with net.open_member(Config(listen_port=60, initial_hosts=[address(1)])):
                await trio.sleep_forever()
        await wait_until(everyone_sees(members, address(60), Status.LEFT), within=5)


async def _seeded_run(seed: int, outcome: list[object]) -> None:
    seed_trio_scheduler(seed)
    net = SimNetwork(seed=seed, loss=0.05, jitter=0.001)
    async with watched_cluster(net, 12) as (members, recorder):
        net.crash(members[7].address)
        await trio.sleep(20)
        await members[0].broadcast(b"x")
        await trio.sleep(5)
    outcome.append(sorted(f"{t:.6f} {who} {e!r}" for t, who, e in recorder.events))
    outcome.append(net.delivered)


def replay(seed: int) -> list[object]:
    outcome: list[object] = []
    trio.run(_seeded_run, seed, outcome, clock=trio.testing.MockClock(autojump_threshold=0))
    return outcome


def test_the_same_seed_gives_the_same_run() -> None:
    first = replay(5)
    assert replay(5) == first
    assert replay(6) != first


async def test_a_member_that_missed_a_newcomer_learns_it_from_its_pings(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # a is cut off from b, so b's gossip about c never reaches a; c joins
    # through b and then pings a. Periodic sync is off, and join() makes no
    # follow-up exchange: only the unknown sender's own packets can tell a.
    net = SimNetwork(seed=23)

    def quiet(port: int, *hosts: str) -> Config:
        return Config(listen_port=port, initial_hosts=list(hosts), sync_interval_seconds=0)

    async with net.open_member(quiet(1)) as a, net.open_member(quiet(2, address(1))) as b:
        await wait_converged(a, b, timeout=5)
        net.partition([a.address], [b.address])
        async with net.open_member(quiet(3)) as c:
            assert await c.join(b.address) == 1  # join() makes no follow-up exchange
            took = await wait_until(lambda: status_seen(a, c.address) is Status.ALIVE, within=30)
            assert took <= 12 * PERIOD
