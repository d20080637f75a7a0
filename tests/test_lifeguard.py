"""Lifeguard: local health, nacks, dynamic suspicion, buddy system, adaptive timeout.

Three layers: the pure rules of :mod:`trio_swim.suspicion` against their
formulas; one member facing a scripted world (a fake transport the test
reads and writes, in virtual time, so every timing is exact); and small
clusters on :class:`~trio_swim.testing.SimNetwork` with a slow member.
"""

from __future__ import annotations

import errno
import itertools
import math
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from trio_swim import Config, Member, Status, StatusChanged
from trio_swim.member import run_member
from trio_swim.suspicion import (
    LocalHealth,
    RttEstimator,
    Suspicion,
    expected_confirmations,
    min_suspicion_timeout,
    nack_timeout,
    probe_health_delta,
    suspicion_timeout,
)
from trio_swim.testing import SimNetwork, seed_trio_scheduler, wait_converged
from trio_swim.transport import StreamCounters, StreamHandler, StreamLimits
from trio_swim.wire import (
    Ack,
    Codec,
    Message,
    Nack,
    Packet,
    Ping,
    PingReq,
    Sync,
    Update,
    WireStatus,
)

from simcluster import Recorder, everyone_sees, open_cluster, wait_until

PERIOD = 0.25

# ------------------------------------------------------------- pure rules


@pytest.mark.parametrize(
    ("members", "expected"),
    [(1, 1.0), (2, 1.0), (10, 1.0), (20, 1.30103), (100, 2.0), (1000, 3.0), (5000, 3.69897)],
)
def test_minimum_suspicion_is_mult_times_log10_n_periods(members: int, expected: float) -> None:
    # suspicion_mult=4, period=0.25 s: 4 x max(1, log10 n) x 0.25 = max(1, log10 n)
    assert min_suspicion_timeout(members, 0.25, 4) == pytest.approx(expected, abs=1e-5)
    assert min_suspicion_timeout(members, 1.0, 5) == pytest.approx(5 * expected, abs=1e-4)


# Worked by hand: min = 4 x log10(n) x 0.25 s, max = 6 x min, k = 4 - 2 = 2,
# timeout(c) = max - log(c + 1) / log(3) x (max - min), never below min.
TIMEOUT_TABLE = [
    # n, confirmations, seconds
    (10, 0, 6.0),
    (10, 1, 2.845351),
    (10, 2, 1.0),
    (10, 3, 1.0),
    (20, 0, 7.806180),
    (20, 1, 3.701887),
    (20, 2, 1.301030),
    (100, 0, 12.0),
    (100, 1, 5.690702),
    (100, 2, 2.0),
    (100, 7, 2.0),
    (1000, 0, 18.0),
    (1000, 1, 8.536053),
    (1000, 2, 3.0),
]


@pytest.mark.parametrize(("members", "confirmations", "seconds"), TIMEOUT_TABLE)
def test_suspicion_timeout_decays_with_confirmations(
    members: int, confirmations: int, seconds: float
) -> None:
    minimum = min_suspicion_timeout(members, PERIOD, 4)
    k = expected_confirmations(4, members)
    assert k == 2
    timeout = suspicion_timeout(confirmations, minimum=minimum, maximum=6 * minimum, expected=k)
    assert timeout == pytest.approx(seconds, abs=1e-5)


def test_suspicion_timeout_with_other_multipliers() -> None:
    # suspicion_mult=6 -> k=4; n=100: min = 6 x 2 x 0.25 = 3 s, max = 3 x 3 = 9 s.
    k = expected_confirmations(6, 100)
    assert k == 4
    got = [suspicion_timeout(c, minimum=3.0, maximum=9.0, expected=k) for c in range(6)]
    want = [9.0, 9.0 - 6 * math.log(2) / math.log(5), 9.0 - 6 * math.log(3) / math.log(5)]
    want += [9.0 - 6 * math.log(4) / math.log(5), 3.0, 3.0]
    assert got == pytest.approx(want)


def test_too_few_members_to_confirm_means_the_minimum() -> None:
    assert expected_confirmations(4, 4) == 2
    assert expected_confirmations(4, 3) == 0
    assert expected_confirmations(2, 100) == 0
    assert suspicion_timeout(0, minimum=1.0, maximum=6.0, expected=0) == 1.0


@given(
    st.integers(min_value=0, max_value=50),
    st.integers(min_value=1, max_value=20),
    st.floats(min_value=0.01, max_value=100),
    st.integers(min_value=1, max_value=20),
)
def test_suspicion_timeout_stays_between_min_and_max_and_never_grows(
    confirmations: int, expected: int, minimum: float, spread: int
) -> None:
    maximum = minimum * spread
    now = suspicion_timeout(confirmations, minimum=minimum, maximum=maximum, expected=expected)
    after = suspicion_timeout(
        confirmations + 1, minimum=minimum, maximum=maximum, expected=expected
    )
    assert minimum <= after <= now <= maximum
    if confirmations >= expected:
        assert now == minimum


def test_a_suspicion_counts_each_confirmer_once_and_only_up_to_k() -> None:
    s = Suspicion(3, "b", 10.0, minimum=1.0, maximum=6.0, expected=2)
    assert (s.origin, s.confirmations, s.deadline) == ("b", 0, 16.0)
    assert not s.confirm("b")  # the origin is no confirmation of itself
    assert s.confirm("c")
    assert not s.confirm("c")
    assert s.deadline == pytest.approx(10.0 + 2.845351, abs=1e-5)
    assert s.confirm("d")
    assert s.deadline == 11.0
    assert not s.confirm("e")  # cannot go lower than the minimum
    assert s.confirmers == {"b", "c", "d"}


def test_only_an_underconfirmed_suspicion_is_rechecked_and_only_once() -> None:
    s = Suspicion(1, "b", 0.0, minimum=1.0, maximum=6.0, expected=2)
    assert s.needs_recheck()
    s.rechecking = True
    assert not s.needs_recheck()
    s.restart(20.0)  # the suspect answered: a whole timeout again, same accusers
    assert (s.rechecking, s.deadline, s.needs_recheck()) == (False, 26.0, True)
    s.confirm("c")
    s.confirm("d")
    assert not s.needs_recheck()  # k accusers: the verdict needs no re-check
    assert not Suspicion(1, "b", 0.0, minimum=1.0, maximum=1.0, expected=0).needs_recheck()


def test_local_health_is_clamped_and_scales_by_score_plus_one() -> None:
    health = LocalHealth(8)
    assert (health.score, health.multiplier) == (0, 1)
    health.apply(-1)
    assert health.score == 0
    health.apply(3)
    assert (health.score, health.multiplier) == (3, 4)
    health.apply(10)
    assert (health.score, health.multiplier) == (7, 8)
    health.apply(-2)
    assert health.score == 5
    assert LocalHealth(1).multiplier == 1
    single = LocalHealth(1)
    single.apply(5)
    assert single.multiplier == 1


@pytest.mark.parametrize(
    ("acked", "helpers", "nacks", "delta"),
    [
        (True, 0, 0, -1),  # direct ack
        (True, 3, 2, -1),  # relayed ack, whatever the nacks
        (False, 0, 0, 1),  # failed, no one to ask
        (False, 3, 3, 0),  # failed, every helper nacked: the target is silent
        (False, 3, 1, 2),  # two helpers not heard from
        (False, 3, 0, 3),
        (False, 2, 5, 0),  # duplicate nacks cannot make it negative
    ],
)
def test_probe_health_delta(acked: bool, helpers: int, nacks: int, delta: int) -> None:
    assert probe_health_delta(acked, helpers, nacks) == delta


def test_nack_comes_within_half_the_requesters_remaining_window() -> None:
    assert nack_timeout(0.1, 0.25, 0.1) == pytest.approx(0.075)
    assert nack_timeout(0.01, 0.25, 0.1) == 0.01
    assert nack_timeout(0.5, 1.0, 0.5) == 0.25
    assert nack_timeout(0.2, 0.2, 0.3) == 0.0


def test_rtt_estimator_is_mean_plus_three_sigma_within_floor_and_ceiling() -> None:
    rtt = RttEstimator(0.01, 0.1, window=4, min_samples=3)
    assert rtt.timeout() == 0.1
    rtt.observe(0.02)
    rtt.observe(0.02)
    assert rtt.timeout() == 0.1  # too few samples to trust
    rtt.observe(0.02)
    assert rtt.timeout() == pytest.approx(0.02)
    rtt.observe(0.04)  # mean 0.025, sigma 0.00866
    assert rtt.timeout() == pytest.approx(0.025 + 3 * math.sqrt(0.0003 / 4))
    for _ in range(4):
        rtt.observe(0.001)
    assert rtt.timeout() == 0.01  # the window forgot the slow ones; floor
    for _ in range(4):
        rtt.observe(1.0)
    assert rtt.timeout() == 0.1  # ceiling
    rtt.observe(-5.0)  # clock oddities count as zero
    assert rtt.timeout() == 0.1


# ------------------------------------------------- one member, scripted world

ME = "10.0.0.1:7946"
CODEC = Codec("trio-swim", 1400)


class Script:
    """The whole network as one member sees it: a fake transport.

    Everything the member sends is decoded and kept in :attr:`sent` with the
    virtual time; :meth:`inject` delivers a packet from anyone. ``on_send``
    (if set) is called for each packet sent, to answer it at once.
    """

    def __init__(self) -> None:
        self.sent: list[tuple[float, str, Packet]] = []
        self.on_send: list[Callable[[str, Packet], None]] = []
        self._inbox_in, self._inbox = trio.open_memory_channel[tuple[bytes, str]](10_000)

    @property
    def local_address(self) -> str:
        return ME

    async def send(self, data: bytes, address: str) -> bool:
        await trio.lowlevel.checkpoint()
        return self.send_nowait(data, address)

    def send_nowait(self, data: bytes, address: str) -> bool:
        packet = CODEC.decode(data)
        assert isinstance(packet, Packet)
        self.sent.append((trio.current_time(), address, packet))
        for answer in self.on_send:
            answer(address, packet)
        return True

    async def receive(self) -> tuple[bytes, str]:
        return await self._inbox.receive()

    async def resolve(self, text: str) -> list[str]:
        await trio.lowlevel.checkpoint()
        return [text]

    async def request(self, address: str, data: bytes, limits: StreamLimits) -> bytes:
        await trio.lowlevel.checkpoint()
        raise ConnectionRefusedError(errno.ECONNREFUSED, "the script takes no streams")

    async def serve_streams(self, handler: StreamHandler, limits: StreamLimits) -> None:
        await trio.sleep_forever()

    @property
    def stream_counters(self) -> StreamCounters:
        return StreamCounters()

    def close(self) -> None:
        pass

    def inject(self, sender: str, *messages: Message) -> None:
        """Deliver one packet from ``sender`` now."""
        self._inbox_in.send_nowait((CODEC.encode(sender, list(messages)), sender))

    def introduce(self, *peers: str, incarnation: int = 1) -> None:
        """Make the member know ``peers`` as ALIVE (a one-way state push)."""
        records = [Update(p, WireStatus.ALIVE, incarnation, p) for p in peers]
        self.inject(peers[0], Sync(False, records))

    def messages_to(self, address: str, kind: type[Any], since: float = 0.0) -> list[float]:
        """Times at which a ``kind`` message went to ``address``."""
        return [
            at
            for at, to, packet in self.sent
            if to == address and at >= since and any(isinstance(m, kind) for m in packet.messages)
        ]

    def updates_to(self, address: str) -> list[Update]:
        """Every membership update sent to ``address``, in order."""
        return [
            m
            for _, to, packet in self.sent
            if to == address
            for m in packet.messages
            if isinstance(m, Update)
        ]


@asynccontextmanager
async def scripted_member(**settings: Any) -> AsyncIterator[tuple[Member, Script]]:
    """One member on a :class:`Script`, with state sync off and a fixed ack timeout."""
    script = Script()
    options: dict[str, Any] = {
        "listen_ip": "10.0.0.1",
        "listen_port": 7946,
        "sync_interval_seconds": 0,
        "adaptive_probe_timeout": False,
        "leave_timeout_millis": 0,
    }
    options.update(settings)
    async with run_member(
        Config(**options), script, rng=random.Random(5), incarnation=10
    ) as member:
        yield member, script


def ack_pings(script: Script, *peers: str) -> Callable[[str, Packet], None]:
    """An answer function: ``peers`` answer every ping at once."""

    def answer(to: str, packet: Packet) -> None:
        if to in peers:
            for m in packet.messages:
                if isinstance(m, Ping):
                    script.inject(to, Ack(m.seq))

    return answer


def refute_suspicion(script: Script, peer: str) -> Callable[[str, Packet], None]:
    """An answer function: ``peer`` refutes any suspicion of it it is sent."""

    def answer(to: str, packet: Packet) -> None:
        for m in packet.messages:
            if (
                to == peer
                and isinstance(m, Update)
                and m.address == peer
                and m.status is WireStatus.SUSPECT
            ):
                script.inject(peer, Update(peer, WireStatus.ALIVE, m.incarnation + 1, peer))

    return answer


def statuses(member: Member) -> dict[str, tuple[Status, int]]:
    return {n.address: (n.status, n.incarnation) for n in member.members()}


@pytest.mark.parametrize("lifeguard", [True, False])
async def test_failed_probes_stretch_the_period_and_successes_shrink_it(
    autojump_clock: trio.testing.MockClock, lifeguard: bool
) -> None:
    peer = "10.0.0.2:7946"
    async with scripted_member(lifeguard=lifeguard) as (member, script):
        # The peer never acks, and refutes each suspicion it is told of: the
        # member's probes fail (there is nobody to ask to help) but it keeps
        # probing the same live peer.
        script.on_send.append(refute_suspicion(script, peer))
        script.introduce(peer)
        await trio.sleep(9.5)
        pings = script.messages_to(peer, Ping)
        gaps = [round(b - a, 6) for a, b in itertools.pairwise(pings)]
        if lifeguard:
            # +1 per failed probe; period x (score + 1), at most x8.
            assert gaps[:8] == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
            assert member.statistics().local_health == 7
            assert member.statistics().probe_timeout == pytest.approx(0.8)
        else:
            assert set(gaps) == {0.25}
            assert member.statistics().local_health == 0
            assert member.statistics().probe_timeout == pytest.approx(0.1)
        # Now it acks: each success takes one off, and the period shrinks.
        script.on_send.append(ack_pings(script, peer))
        since = trio.current_time()
        await trio.sleep(12.0)
        pings = script.messages_to(peer, Ping, since)
        gaps = [round(b - a, 6) for a, b in itertools.pairwise(pings)]
        if lifeguard:
            assert gaps[:8] == [2.0, 1.75, 1.5, 1.25, 1.0, 0.75, 0.5, 0.25]
        assert set(gaps[8:]) == {0.25}
        assert member.statistics().local_health == 0


async def test_having_to_refute_counts_against_local_health(
    mock_clock: trio.testing.MockClock,
) -> None:
    peer = "10.0.0.2:7946"
    async with scripted_member() as (member, script):
        script.on_send.append(ack_pings(script, peer))
        script.introduce(peer)
        for _ in range(10):
            await trio.testing.wait_all_tasks_blocked()
            mock_clock.jump(0.1)
        await trio.testing.wait_all_tasks_blocked()
        assert script.messages_to(peer, Ping)
        assert member.statistics().local_health == 0
        # Three suspicions at once, each answered by a refutation; the clock
        # stands still, so no probe can take anything off in between.
        for incarnation in (10, 11, 12):
            script.inject(peer, Update(ME, WireStatus.SUSPECT, incarnation, peer))
        await trio.testing.wait_all_tasks_blocked()
        assert member.node.incarnation == 13
        assert member.statistics().local_health == 3


@pytest.mark.parametrize("lifeguard", [True, False])
async def test_a_relay_nacks_a_silent_target_and_still_relays_a_late_ack(
    autojump_clock: trio.testing.MockClock, lifeguard: bool
) -> None:
    requester, target = "10.0.0.2:7946", "10.0.0.3:7946"
    async with scripted_member(lifeguard=lifeguard) as (_member, script):
        script.introduce(requester, target)  # only members relay for members
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        script.inject(requester, PingReq(77, target))
        await trio.sleep(0.2)
        [(pinged, _, ping)] = [
            (at, to, p)
            for at, to, p in script.sent
            if to == target and any(isinstance(m, Ping) for m in p.messages)
        ]
        assert pinged == start
        nacks = script.messages_to(requester, Nack)
        if lifeguard:
            # Fixed 100 ms ack timeout, 250 ms period: min(0.1, (0.25 - 0.1) / 2).
            assert nacks == [pytest.approx(start + 0.075)]
        else:
            assert nacks == []
        # The target answers after the nack, within a period: relayed all the same.
        [seq] = [m.seq for m in ping.messages if isinstance(m, Ping)]
        script.inject(target, Ack(seq))
        await trio.sleep(0.01)
        relayed = [
            m
            for _, to, p in script.sent
            if to == requester
            for m in p.messages
            if isinstance(m, Ack)
        ]
        assert relayed == [Ack(77)]


@pytest.mark.parametrize(("helpers_nack", "health"), [(True, 0), (False, 3)])
async def test_missed_nacks_tell_a_slow_prober_from_a_silent_target(
    autojump_clock: trio.testing.MockClock, helpers_nack: bool, health: int
) -> None:
    target = "10.0.0.9:7946"
    helpers = [f"10.0.0.{i}:7946" for i in range(2, 5)]

    def helpers_answer(to: str, packet: Packet) -> None:
        for m in packet.messages:
            if to in helpers and isinstance(m, PingReq) and helpers_nack:
                script.inject(to, Nack(m.seq))

    health_at_ping: list[int] = []

    def note_health(to: str, packet: Packet) -> None:
        if any(isinstance(m, Ping) for m in packet.messages):
            health_at_ping.append(member.statistics().local_health)

    async with scripted_member() as (member, script):
        script.on_send += [ack_pings(script, *helpers), helpers_answer, note_health]
        script.introduce(target, *helpers)
        while not script.messages_to(target, Ping):
            await trio.sleep(PERIOD)
        # The next probe goes out as the target's period ends, exactly a
        # period later: wake a little after it, not at the same instant.
        await trio.sleep(1.1 * PERIOD)
        pings = [to for _, to, p in script.sent if isinstance(p.messages[0], Ping)]
        asked = {to for _, to, p in script.sent if isinstance(p.messages[0], PingReq)}
        assert asked == set(helpers)
        # Health as the next probe went out: only the target's probe failed.
        assert health_at_ping[pings.index(target) + 1] == health
        assert statuses(member)[target] == (Status.SUSPECT, 1)


@pytest.mark.parametrize("lifeguard", [True, False])
async def test_a_probe_of_a_suspect_carries_the_suspicion(
    autojump_clock: trio.testing.MockClock, lifeguard: bool
) -> None:
    suspect, accuser = "10.0.0.2:7946", "10.0.0.3:7946"
    async with scripted_member(lifeguard=lifeguard, gossip_interval_millis=0) as (member, script):
        script.on_send.append(ack_pings(script, suspect, accuser))
        script.introduce(suspect, accuser, incarnation=4)
        script.inject(accuser, Update(suspect, WireStatus.SUSPECT, 4, accuser))
        while not script.messages_to(suspect, Ping):
            await trio.sleep(PERIOD)
        [first] = [p for _, to, p in script.sent if to == suspect][:1]
        carried = [m for m in first.messages if isinstance(m, Update) and m.address == suspect]
        assert isinstance(first.messages[0], Ping)
        assert statuses(member)[suspect] == (Status.SUSPECT, 4)
        # The accuser's report rides along as gossip either way; with Lifeguard
        # the member's own belief is in the ping itself, whatever the gossip.
        assert Update(suspect, WireStatus.SUSPECT, 4, accuser) in carried
        assert (Update(suspect, WireStatus.SUSPECT, 4, ME) in carried) is lifeguard


async def test_a_suspect_answers_with_its_refutation_and_repeats_it_when_told_old_news(
    autojump_clock: trio.testing.MockClock,
) -> None:
    prober, gossiper = "10.0.0.2:7946", "10.0.0.3:7946"
    async with scripted_member() as (member, script):
        script.introduce(prober, gossiper)
        await trio.sleep(0.01)
        script.inject(prober, Ping(5), Update(ME, WireStatus.SUSPECT, 10, gossiper))
        await trio.sleep(0.01)
        refutation = Update(ME, WireStatus.ALIVE, 11, ME)
        assert member.node.incarnation == 11
        sent_to_prober = [m for _, to, p in script.sent if to == prober for m in p.messages]
        assert Ack(5) in sent_to_prober
        assert refutation in sent_to_prober
        # The member that raised the suspicion is told directly as well.
        assert refutation in script.updates_to(gossiper)
        # Someone who missed all that passes the old suspicion on: it is told.
        latecomer = "10.0.0.4:7946"
        script.introduce(latecomer)
        script.inject(latecomer, Update(ME, WireStatus.SUSPECT, 10, gossiper))
        await trio.sleep(0.01)
        assert refutation in script.updates_to(latecomer)
        assert member.node.incarnation == 11
        assert member.statistics().local_health == 1  # one refutation, not two


async def test_a_state_exchange_keeps_the_name_of_who_raised_a_suspicion(
    autojump_clock: trio.testing.MockClock,
) -> None:
    suspect, accuser, asker = "10.0.0.2:7946", "10.0.0.3:7946", "10.0.0.4:7946"
    async with scripted_member() as (_member, script):
        script.on_send.append(ack_pings(script, suspect, accuser, asker))
        script.introduce(suspect, accuser, asker)
        script.inject(accuser, Update(suspect, WireStatus.SUSPECT, 1, accuser))
        await trio.sleep(0.01)
        script.inject(asker, Sync(True, [Update(asker, WireStatus.ALIVE, 1, asker)]))
        await trio.sleep(0.01)
        records = [
            u
            for _, to, p in script.sent
            if to == asker
            for m in p.messages
            if isinstance(m, Sync)
            for u in m.members
        ]
        # Under the member's own name it would count as a second, independent
        # accuser at the asker, and shorten its timeout.
        assert Update(suspect, WireStatus.SUSPECT, 1, accuser) in records


PEERS = [f"10.0.0.{i}:7946" for i in range(2, 11)]  # with the member: n = 10
SUSPECT_PEER, ACCUSER, SECOND, THIRD = PEERS[:4]


async def dead_at(member: Member, address: str) -> float:
    """Wait for ``address`` to be declared DEAD; return the virtual time."""
    with trio.fail_after(60):
        async with member.events() as events:
            async for event in events:
                if (
                    isinstance(event, StatusChanged)
                    and event.node.address == address
                    and event.status is Status.DEAD
                ):
                    return trio.current_time()
    raise AssertionError("the member closed first")


def next_period_start(t: float) -> float:
    """The first probe period boundary at or after ``t`` (periods start at
    0, 0.25, 0.5 ... while local health stays at 0)."""
    return math.ceil(t / PERIOD) * PERIOD


@pytest.mark.parametrize(
    ("lifeguard", "reports", "seconds", "rechecked"),
    [
        # n = 10: minimum 4 x 1 x 0.25 = 1 s, maximum 6 s, k = 2.
        (True, [], 6.0, True),
        (True, [(1.0, SECOND)], 2.845351, True),
        (True, [(0.5, SECOND), (0.7, SECOND), (0.8, ACCUSER)], 2.845351, True),
        (True, [(1.0, SECOND), (2.0, THIRD)], 2.0, False),
        (True, [(0.1, SECOND), (0.2, THIRD)], 1.0, False),
        (False, [], 1.0, False),
        (False, [(0.1, SECOND), (0.2, THIRD)], 1.0, False),
    ],
    ids=["alone", "one-more", "repeats-ignored", "two-more", "two-more-early", "swim", "swim-2"],
)
async def test_a_suspicion_times_out_by_the_formula(
    autojump_clock: trio.testing.MockClock,
    lifeguard: bool,
    reports: list[tuple[float, str]],
    seconds: float,
    rechecked: bool,
) -> None:
    start = 1.1  # off the period grid, so the re-check's slot is unambiguous
    deadline = start + seconds

    def answer(to: str, packet: Packet) -> None:
        # Every peer acks (the suspect too, until the deadline: an ack is no
        # refutation); no one refutes, so only the timer decides.
        for m in packet.messages:
            if isinstance(m, Ping) and (to != SUSPECT_PEER or trio.current_time() < deadline):
                script.inject(to, Ack(m.seq))

    async with scripted_member(lifeguard=lifeguard) as (member, script):
        script.on_send.append(answer)
        script.introduce(*PEERS)
        await trio.sleep_until(start)
        script.inject(ACCUSER, Update(SUSPECT_PEER, WireStatus.SUSPECT, 1, ACCUSER))
        async with trio.open_nursery() as nursery:
            verdict: list[float] = []

            async def watch() -> None:
                verdict.append(await dead_at(member, SUSPECT_PEER))

            nursery.start_soon(watch)
            for at, source in reports:
                await trio.sleep_until(start + at)
                script.inject(source, Update(SUSPECT_PEER, WireStatus.SUSPECT, 1, source))
        if rechecked:
            # Fewer accusers than k: the suspect is probed first thing in the
            # next period, and the verdict comes when that probe fails.
            recheck = next_period_start(deadline)
            assert script.messages_to(SUSPECT_PEER, Ping, since=deadline)[0] == recheck
            assert verdict == [pytest.approx(recheck + PERIOD, abs=1e-6)]
        else:
            assert verdict == [pytest.approx(deadline, abs=1e-6)]


async def test_a_suspect_that_answers_the_recheck_is_not_declared_dead(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with scripted_member() as (member, script):
        # The suspect acks but never refutes (as if every refutation were lost).
        script.on_send.append(ack_pings(script, *PEERS))
        script.introduce(*PEERS)
        await trio.sleep_until(1.1)
        script.inject(ACCUSER, Update(SUSPECT_PEER, WireStatus.SUSPECT, 1, ACCUSER))
        with trio.move_on_after(30):
            await dead_at(member, SUSPECT_PEER)
            pytest.fail("declared dead although it answered")
        assert statuses(member)[SUSPECT_PEER] == (Status.SUSPECT, 1)
        pings = script.messages_to(SUSPECT_PEER, Ping)
        assert 7.25 in pings  # the first re-check, right after the 6 s deadline


async def test_a_failed_probe_of_a_suspect_confirms_the_suspicion(
    autojump_clock: trio.testing.MockClock,
) -> None:
    silent = {"on": False}

    def answer(to: str, packet: Packet) -> None:
        for m in packet.messages:
            if isinstance(m, Ping) and not (to == SUSPECT_PEER and silent["on"]):
                script.inject(to, Ack(m.seq))
            elif isinstance(m, PingReq):
                script.inject(to, Nack(m.seq))

    async with scripted_member() as (member, script):
        script.on_send.append(answer)
        script.introduce(*PEERS)
        await trio.sleep(1.0)
        async with trio.open_nursery() as nursery:
            verdict: list[float] = []

            async def watch() -> None:
                verdict.append(await dead_at(member, SUSPECT_PEER))

            nursery.start_soon(watch)
            await trio.testing.wait_all_tasks_blocked()
            start = trio.current_time()
            silent["on"] = True
            script.inject(ACCUSER, Update(SUSPECT_PEER, WireStatus.SUSPECT, 1, ACCUSER))
            script.inject(SECOND, Update(SUSPECT_PEER, WireStatus.SUSPECT, 1, SECOND))
        [probed] = script.messages_to(SUSPECT_PEER, Ping, since=start)[:1]
        # The probe fails at the end of its period: the member itself is the
        # k-th accuser, so the timeout drops from 2.845 s to its minimum, 1 s.
        failed = probed + PERIOD
        assert failed < start + 2.845351
        assert verdict == [pytest.approx(max(failed, start + 1.0), abs=1e-6)]
        assert member.statistics().local_health == 0  # every helper nacked


# ----------------------------------------------------------- whole clusters


def dead_events(recorder: Recorder, about: set[str]) -> list[tuple[float, str, str]]:
    """(time, observer, subject) of each StatusChanged to DEAD about ``about``."""
    return [
        (at, who, e.node.address)
        for at, who, e in recorder.events
        if isinstance(e, StatusChanged) and e.status is Status.DEAD and e.node.address in about
    ]


@pytest.mark.parametrize("lifeguard", [True, False])
async def test_a_slow_member_does_not_get_healthy_ones_declared_dead(
    autojump_clock: trio.testing.MockClock, lifeguard: bool
) -> None:
    seed_trio_scheduler(61)
    net = SimNetwork(seed=61)
    async with open_cluster(net, 10, lifeguard=lifeguard) as members:
        await wait_converged(*members, timeout=30)
        slow = members[3]
        healthy = {m.address for m in members} - {slow.address}
        recorder = Recorder()
        async with trio.open_nursery() as nursery:
            await recorder.watch(nursery, members)
            # Everything it receives arrives 3 s late: its probes all fail, so
            # it suspects every member it probes; the refutations reach it
            # after 3 s, beyond the 1 s minimum timeout of n = 10.
            net.set_delay(slow.address, inbound=3.0)
            highest = 0
            for _ in range(80):
                await trio.sleep(PERIOD)
                highest = max(highest, slow.statistics().local_health)
            net.set_delay(slow.address)
            await trio.sleep(20.0)
            nursery.cancel_scope.cancel()
        blamed = dead_events(recorder, healthy)
        if lifeguard:
            assert blamed == []
            assert highest == 7  # it knew it was the slow one
            assert slow.statistics().local_health == 0  # and it recovered
        else:
            # Plain SWIM: the slow member declares them dead (and some of
            # its verdicts outrun the refutations to other members too).
            assert slow.address in {who for _, who, _ in blamed}
        assert all(len(m.healthy_members()) == 10 for m in members)


@pytest.mark.parametrize("lifeguard", [True, False])
async def test_a_crash_is_declared_by_everyone_long_before_the_maximum_timeout(
    autojump_clock: trio.testing.MockClock, lifeguard: bool
) -> None:
    seed_trio_scheduler(62)
    net = SimNetwork(seed=62)
    async with open_cluster(net, 20, lifeguard=lifeguard) as members:
        await wait_converged(*members, timeout=30)
        victim = members[7].address
        net.crash(victim)
        took = await wait_until(everyone_sees(members, victim, Status.DEAD), within=60)
        # Lifeguard's timeout starts at 6 x 1.3 s = 7.8 s; independent failed
        # probes bring it down to the 1.3 s minimum, so detection is as fast
        # as plain SWIM's: first probe + minimum + dissemination (1.75-3.0 s
        # over seeds 1-12 either way).
        assert took < 4.0
        assert all(m.statistics().local_health == 0 for m in members if m.address != victim)


async def test_the_ack_timeout_follows_the_measured_round_trips(
    autojump_clock: trio.testing.MockClock,
) -> None:
    peer = "10.0.0.2:7946"
    delay = {"now": 0.002}

    async with (
        scripted_member(adaptive_probe_timeout=True) as (member, script),
        trio.open_nursery() as nursery,
    ):

        async def ack_later(seq: int) -> None:
            await trio.sleep(delay["now"])
            script.inject(peer, Ack(seq))

        def answer(to: str, packet: Packet) -> None:
            if nursery.cancel_scope.cancel_called:
                return  # the test is over: the goodbye needs no answer
            for m in packet.messages:
                if to == peer and isinstance(m, Ping):
                    nursery.start_soon(ack_later, m.seq)

        script.on_send.append(answer)
        assert member.statistics().probe_timeout == 0.1  # no samples: the ceiling
        script.introduce(peer)
        await trio.sleep(3.0)
        # A 2 ms network: mean + 3 sigma is 2 ms, so the floor (10 ms) holds.
        assert member.statistics().probe_timeout == pytest.approx(0.01)
        delay["now"] = 0.06
        await trio.sleep(10.0)  # the 32-sample window holds only these now
        # Acks now come after the timeout (so the probes go indirect) but
        # within the period: they are measured all the same, and the
        # timeout grows to fit them instead of failing every probe.
        assert member.statistics().probe_timeout == pytest.approx(0.06, abs=0.005)
        assert member.statistics().local_health == 0
        nursery.cancel_scope.cancel()
