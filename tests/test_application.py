"""What a service uses beside membership: metadata, messages to one member, the
joined signal, lookups, and what a closed member refuses. On the trio-free
Simulation, the pure core and SimNetwork (virtual time)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from trio_swim import (
    AddressError,
    Config,
    DeliveryFailed,
    MessageReceived,
    MessageTooLarge,
    MetadataChanged,
    MetadataTooLarge,
    Status,
    StatusChanged,
)
from trio_swim.events import MemberEvent
from trio_swim.protocol import Joined, JoinRetrying, StreamDone, Swim
from trio_swim.testing import SimMember, SimNetwork, Simulation, converged, wait_converged
from trio_swim.wire import Codec, Packet, Ping, Sync, Update, UserMessage, WireStatus

PERIOD = 0.2


def settings(port: int, **extra: Any) -> Config:
    hosts = [] if port == 1 else ["127.0.0.1:1"]
    options: dict[str, Any] = {
        "listen_port": port,
        "heartbeat_millis": int(PERIOD * 1000),
        "initial_hosts": hosts,
    }
    options.update(extra)
    return Config(**options)


def recorder(seen: list[MemberEvent]) -> Callable[[float, MemberEvent], None]:
    def record(_time: float, event: MemberEvent) -> None:
        seen.append(event)

    return record


def sim_cluster(
    size: int, *, seed: int = 1, loss: float = 0.0, **extra: Any
) -> tuple[Simulation, list[SimMember], dict[str, list[MemberEvent]]]:
    sim = Simulation(seed=seed, loss=loss)
    events: dict[str, list[MemberEvent]] = {}
    members = []
    for port in range(1, size + 1):
        seen: list[MemberEvent] = []
        events[f"127.0.0.1:{port}"] = seen
        members.append(sim.add_member(settings(port, **extra), on_event=recorder(seen)))
    assert sim.run_until(lambda: converged(members), timeout=120, step=PERIOD)
    return sim, members, events


# ---------------------------------------------------------------- metadata


def test_metadata_set_at_start_reaches_a_member_that_joins_a_minute_later() -> None:
    sim, members, _ = sim_cluster(5, metadata=b"")
    first = sim.add_member(settings(6, metadata=b"role=db;port=5432"))
    assert sim.run_until(lambda: converged([*members, first]), timeout=60, step=PERIOD)
    sim.run_for(60)
    seen: list[MemberEvent] = []
    late = sim.add_member(settings(7), on_event=lambda _t, e: seen.append(e))
    everyone = [*members, first, late]
    assert sim.run_until(lambda: converged(everyone), timeout=60, step=PERIOD)
    described = {n.address: n.metadata for n in late.members()}
    assert described[first.address] == b"role=db;port=5432"
    assert described[members[0].address] == b""
    # It comes with the first StatusChanged, and no MetadataChanged follows.
    first_seen = [
        e for e in seen if isinstance(e, StatusChanged) and e.node.address == first.address
    ]
    assert first_seen[0].previous is None
    assert first_seen[0].node.metadata == b"role=db;port=5432"
    assert not [e for e in seen if isinstance(e, MetadataChanged)]


def test_set_metadata_reaches_50_members_in_log_n_periods_under_loss_once_each() -> None:
    sim, members, events = sim_cluster(50, loss=0.05, metadata=b"v1")
    for seen in events.values():
        seen.clear()
    origin = members[7]
    started = sim.now
    sim.set_metadata(origin.address, b"v2")
    others = [m for m in members if m is not origin]

    def everyone_has_it() -> bool:
        return all(
            n.metadata == b"v2" for m in others for n in m.members() if n.address == origin.address
        )

    assert sim.run_until(everyone_has_it, timeout=60, step=PERIOD)
    periods = (sim.now - started) / PERIOD
    assert periods <= 4 * math.log2(50), periods
    sim.run_for(30)  # late copies, retransmits, state exchanges: no repeat
    for member in others:
        changes = [e for e in events[member.address] if isinstance(e, MetadataChanged)]
        assert len(changes) == 1, (member.address, changes)
        assert changes[0].previous == b"v1"
        assert changes[0].node.address == origin.address
        assert changes[0].node.metadata == b"v2"
    assert origin.node.metadata == b"v2"
    assert events[origin.address] == []  # not its own news


def test_metadata_over_the_limit_is_refused_here_and_from_the_network() -> None:
    core = Swim(
        Config(max_metadata_bytes=8), "10.0.0.1:1", rng=random.Random(1), incarnation=1, now=0
    )
    with pytest.raises(MetadataTooLarge, match="max_metadata_bytes=8"):
        core.set_metadata(b"123456789", 0.0)
    assert isinstance(MetadataTooLarge("x"), ValueError)
    codec = Codec("trio-swim", 1400)
    peer = "10.0.0.2:1"
    big = Update(peer, WireStatus.ALIVE, 1, peer, b"x" * 9)
    core.receive(codec.encode(peer, [Sync(False, [big])]), 0.1, peer)
    assert core.get(peer) is None
    assert core.statistics().refused_metadata == 1
    fine = Update(peer, WireStatus.ALIVE, 1, peer, b"x" * 8)
    core.receive(codec.encode(peer, [Sync(False, [fine])]), 0.2, peer)
    node = core.get(peer)
    assert node is not None
    assert node.metadata == b"x" * 8


def test_a_refutation_keeps_the_metadata_and_suspicion_does_not_erase_it() -> None:
    sim, members, _ = sim_cluster(4, metadata=b"keep me")
    victim = members[2]
    sim.pause(victim.address, 5 * PERIOD)
    assert sim.run_until(
        lambda: any(
            n.address == victim.address and n.status is Status.SUSPECT
            for m in members
            for n in m.members()
        ),
        timeout=10,
    )
    for m in members:
        for n in m.members():
            if n.address == victim.address:
                assert n.metadata == b"keep me"
    assert sim.run_until(lambda: converged(members), timeout=30, step=PERIOD)
    assert all(n.metadata == b"keep me" for m in members for n in m.members())


# ---------------------------------------------------------------- messages


def test_send_and_send_reliable_arrive_as_message_events() -> None:
    sim, members, events = sim_cluster(3)
    a, b = members[0], members[1]
    for seen in events.values():
        seen.clear()
    sim.send(a.address, b.address, b"over udp")
    sim.send(a.address, b.address, b"over tcp", reliable=True)
    sim.run_for(1)
    got = [e for e in events[b.address] if isinstance(e, MessageReceived)]
    assert sorted((e.payload, e.reliable, e.origin) for e in got) == [
        (b"over tcp", True, a.address),
        (b"over udp", False, a.address),
    ]
    assert not [e for e in events[members[2].address] if isinstance(e, MessageReceived)]


def test_a_message_over_one_datagram_is_refused_naming_the_limit() -> None:
    core = Swim(Config(), "10.0.0.1:1", rng=random.Random(1), incarnation=1, now=0)
    limit = core.max_message_bytes
    core.send("10.0.0.2:1", b"x" * limit, 0.0)
    address, data = core.next_datagram() or ("", b"")
    assert address == "10.0.0.2:1"
    assert len(data) <= 1400
    with pytest.raises(MessageTooLarge, match=f"over the {limit} bytes"):
        core.send("10.0.0.2:1", b"x" * (limit + 1), 0.0)
    with pytest.raises(MessageTooLarge, match="max_stream_bytes"):
        core.send_reliable("10.0.0.2:1", b"x" * (core.max_reliable_bytes + 1), 0.0)


def test_a_message_from_another_cluster_is_dropped_and_counted() -> None:
    core = Swim(Config(), "10.0.0.1:1", rng=random.Random(1), incarnation=1, now=0)
    other = Codec("another-cluster", 1400)
    core.receive(other.encode("10.0.0.2:1", [UserMessage(b"hi")]), 0.0, "10.0.0.2:1")
    assert (
        core.handle_stream(other.encode("10.0.0.2:1", [UserMessage(b"hi")]), 0.0, "10.0.0.2:5")
        is None
    )
    assert core.next_event() is None
    assert core.statistics().dropped_foreign_cluster == 2


def test_a_stream_frame_claiming_another_host_is_spoofed() -> None:
    core = Swim(Config(), "10.0.0.1:1", rng=random.Random(1), incarnation=1, now=0)
    codec = Codec("trio-swim", 1 << 20)
    frame = codec.encode("10.0.0.2:1", [UserMessage(b"hi"), Ping(5)])
    assert core.handle_stream(frame, 0.0, "10.0.0.9:40000") is None
    assert core.statistics().dropped_spoofed == 1
    answer = core.handle_stream(frame, 0.0, "10.0.0.2:40000")  # same host, any port
    assert answer is not None
    packet = codec.decode(answer)
    assert isinstance(packet, Packet)
    assert packet.sender == "10.0.0.1:1"
    event = core.next_event()
    assert event == MessageReceived("10.0.0.2:1", b"hi", True)


def test_a_stranger_on_a_stream_cannot_accuse_a_member() -> None:
    core = Swim(Config(), "10.0.0.1:1", rng=random.Random(1), incarnation=1, now=0)
    codec = Codec("trio-swim", 1 << 20)
    friend = "10.0.0.3:1"
    core.receive(
        codec.encode(friend, [Sync(False, [Update(friend, WireStatus.ALIVE, 1, friend)])]),
        0.0,
        friend,
    )
    stranger = "10.0.0.2:1"
    accusation = Update(friend, WireStatus.DEAD, 1, stranger)
    core.handle_stream(codec.encode(stranger, [Sync(False, [accusation])]), 0.1, "10.0.0.2:40000")
    node = core.get(friend)
    assert node is not None
    assert node.status is Status.ALIVE


# -------------------------------------------------------- state over streams


def test_a_1000_member_state_exchange_over_tcp_takes_one_round_trip() -> None:
    config = Config(max_members=2000)
    seed = Swim(config, "10.0.0.1:1", rng=random.Random(1), incarnation=1, now=0)
    codec = Codec("trio-swim", 1400)
    peers = [f"10.1.{i // 200}.{i % 200 + 1}:7946" for i in range(999)]
    for i in range(0, len(peers), 10):
        records = [
            Update(p, WireStatus.ALIVE, 1, p, f"meta {p}".encode()) for p in peers[i : i + 10]
        ]
        seed.receive(codec.encode(peers[i], [Sync(False, records)]), 0.0, peers[i])
    while seed.next_datagram() is not None:
        pass
    assert len(seed.members()) == 1000

    newcomer = Swim(config, "10.0.0.9:1", rng=random.Random(2), incarnation=1, now=0)
    newcomer.join(["10.0.0.1:1"], 1.0)
    request = newcomer.next_stream()
    assert request is not None
    assert request.address == "10.0.0.1:1"
    assert newcomer.next_stream() is None
    assert newcomer.next_datagram() is None  # nothing over UDP
    answer = seed.handle_stream(request.data, 1.001, "10.0.0.9:50000")
    assert answer is not None
    assert len(answer) > 1400 * 20  # far more than a datagram
    newcomer.stream_reply(request.token, answer, 1.002)
    assert len(newcomer.members()) == 1001
    described = {n.address: n.metadata for n in newcomer.members()}
    assert described[peers[500]] == f"meta {peers[500]}".encode()
    assert newcomer.joined
    events = list(iter(newcomer.next_event, None))
    assert Joined("10.0.0.1:1", 1001) in events
    # The seed learned the newcomer from the same exchange.
    assert seed.get("10.0.0.9:1") is not None


def test_a_failed_state_stream_falls_back_to_udp() -> None:
    _, members, _ = sim_cluster(3)
    blocked = Simulation(seed=2, streams=False)
    first = blocked.add_member(settings(1))
    rest = [blocked.add_member(settings(p)) for p in (2, 3, 4)]
    assert blocked.run_until(lambda: converged([first, *rest]), timeout=30, step=PERIOD)
    assert all(m.statistics().stream_exchanges == 0 for m in [first, *rest])
    assert all(m.statistics().stream_exchanges > 0 for m in members[1:])


def test_the_state_exchange_interval_grows_with_log_n_above_32() -> None:
    def scale(n: int) -> int:
        core = Swim(Config(), "10.0.0.1:1", rng=random.Random(1), incarnation=1, now=0)
        codec = Codec("trio-swim", 1 << 20)
        peers = [f"10.2.{i // 200}.{i % 200 + 1}:1" for i in range(n - 1)]
        records = [Update(p, WireStatus.ALIVE, 1, p) for p in peers]
        core.handle_stream(codec.encode(peers[0], [Sync(False, records)]), 0.0, peers[0])
        return core._push_pull_scale()

    assert [scale(n) for n in (2, 32, 33, 64, 65, 128, 1000)] == [1, 1, 2, 2, 3, 3, 6]


# ------------------------------------------------------- TCP fallback probe


@pytest.mark.parametrize("fallback", [True, False])
def test_the_tcp_fallback_probe_saves_probes_when_udp_is_lossy(fallback: bool) -> None:
    sim, members, events = sim_cluster(10, tcp_fallback_probe=fallback)
    for seen in events.values():
        seen.clear()
    before = [m.statistics() for m in members]
    sim.set_loss(0.3)
    sim.run_for(60)
    after = [m.statistics() for m in members]
    saved = sum(a.tcp_probes_saved - b.tcp_probes_saved for a, b in zip(after, before, strict=True))
    raised = sum(
        a.suspicions_raised - b.suspicions_raised for a, b in zip(after, before, strict=True)
    )
    suspects = sum(
        1
        for seen in events.values()
        for e in seen
        if isinstance(e, StatusChanged) and e.status is Status.SUSPECT
    )
    if fallback:
        assert saved > 50
        assert raised == 0
        assert suspects == 0
    else:
        assert saved == 0
        assert raised > 10
        assert suspects > 10
    assert (
        not any(
            isinstance(e, StatusChanged) and e.status is Status.DEAD
            for seen in events.values()
            for e in seen
        )
        or not fallback
    )


def test_a_crash_is_still_detected_with_the_fallback_probe() -> None:
    sim, members, _ = sim_cluster(10)
    victim = members[4]
    sim.crash(victim.address)
    started = sim.now
    survivors = [m for m in members if m is not victim]
    assert sim.run_until(
        lambda: all(
            n.status is Status.DEAD
            for m in survivors
            for n in m.members()
            if n.address == victim.address
        ),
        timeout=30,
        step=PERIOD,
    )
    assert sim.now - started < 30
    assert sum(m.statistics().tcp_probes_sent for m in survivors) > 0
    assert sum(m.statistics().tcp_probes_saved for m in survivors) == 0


# ------------------------------------------------------------- the runner


async def test_wait_joined_waits_for_a_live_seed_and_not_for_a_dead_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(seed=3)
    async with net.open_member(settings(1)) as first:
        await first.wait_joined()  # no initial_hosts: the first member
        async with net.open_member(settings(2)) as second:
            with trio.fail_after(5):
                await second.wait_joined()
            await wait_converged(first, second, timeout=5)
        dead_seed = Config(listen_port=3, heartbeat_millis=200, initial_hosts=["127.0.0.1:99"])
        async with net.open_member(dead_seed) as lonely:
            with pytest.raises(trio.TooSlowError):
                with trio.fail_after(60):
                    await lonely.wait_joined()


async def test_join_retries_are_reported_with_a_growing_backoff() -> None:
    core = Swim(
        Config(heartbeat_millis=200), "10.0.0.1:1", rng=random.Random(4), incarnation=1, now=0
    )
    core.set_seeds(["10.0.0.2:1"], 0.0)
    now = 0.0
    retries = []
    while now < 120:
        deadline = core.next_deadline()
        assert deadline is not None
        now = deadline
        core.tick(now)
        while (request := core.next_stream()) is not None:
            core.stream_reply(request.token, None, now)
        while core.next_datagram() is not None:
            pass
        retries += [e for e in iter(core.next_event, None) if isinstance(e, JoinRetrying)]
    assert len(retries) >= 4
    assert all(r.seeds == ("10.0.0.2:1",) for r in retries)
    # Attempts spread out: far fewer than one a period.
    assert len(retries) < 120 / 0.2 / 10
    assert not core.joined


async def test_get_and_what_a_closed_member_refuses(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(seed=5)
    async with (
        net.open_member(settings(1, metadata=b"one")) as a,
        net.open_member(settings(2)) as b,
    ):
        await wait_converged(a, b, timeout=10)
        node = b.get("127.0.0.1:1")
        assert node is not None
        assert node.metadata == b"one"
        assert b.get("127.0.0.1:77") is None
        with pytest.raises(AddressError):
            b.get("not an address:port:x")
        await a.set_metadata(b"two")
        with trio.fail_after(10):
            while (b.get(a.address) or node).metadata != b"two":
                await trio.sleep(PERIOD)
        await a.send_reliable(b.address, b"acknowledged")
    for call in (
        a.broadcast(b"x"),
        a.send(b.address, b"x"),
        a.send_reliable(b.address, b"x"),
        a.set_metadata(b"x"),
    ):
        with pytest.raises(trio.ClosedResourceError):
            await call


async def test_send_reliable_to_a_crashed_member_fails_within_the_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(seed=6)
    extra = {"stream_timeout_millis": 1500}
    async with (
        net.open_member(settings(1, **extra)) as a,
        net.open_member(settings(2, **extra)) as b,
    ):
        await wait_converged(a, b, timeout=10)
        net.crash(b.address)
        started = trio.current_time()
        with pytest.raises(DeliveryFailed, match="did not acknowledge"):
            await a.send_reliable(b.address, b"anyone there?")
        assert trio.current_time() - started == pytest.approx(1.5, abs=0.01)
        assert isinstance(DeliveryFailed(), OSError)


async def test_stream_done_is_reported_for_every_reliable_message() -> None:
    core = Swim(Config(), "10.0.0.1:1", rng=random.Random(1), incarnation=1, now=0)
    tokens = [core.send_reliable("10.0.0.2:1", b"m", 0.0) for _ in range(70)]
    requests = list(iter(core.next_stream, None))
    assert len(requests) == 64  # the bound on open streams
    refused = [e for e in iter(core.next_event, None) if isinstance(e, StreamDone)]
    assert [e.token for e in refused] == tokens[64:]
    assert not any(e.ok for e in refused)
    for request in requests:
        core.stream_reply(request.token, None, 1.0)
    failed = [e for e in iter(core.next_event, None) if isinstance(e, StreamDone)]
    assert sorted(e.token for e in failed) == sorted(tokens[:64])
    assert core.statistics().stream_failures == 64


def test_an_introduction_alone_does_not_end_a_udp_join() -> None:
    seed_address = "10.0.0.2:1"
    core = Swim(Config(), "10.0.0.1:1", rng=random.Random(7), incarnation=1, now=0)
    core.set_seeds([seed_address], 0.0)
    core.tick(0.0)
    while (request := core.next_stream()) is not None:
        core.stream_reply(request.token, None, 0.0)  # no TCP: over UDP
    first = [a for a, _ in iter(core.next_datagram, None)]
    assert first == [seed_address]
    codec = Codec("trio-swim", 1400)
    me = Update(seed_address, WireStatus.ALIVE, 1, seed_address)
    # The seed introduces itself; this member's ack of the ping is lost.
    core.receive(codec.encode(seed_address, [Ping(99), Sync(True, [me])]), 0.01, seed_address)
    assert not core.joined
    answers = [a for a, _ in iter(core.next_datagram, None)]  # the ack, its own state
    assert answers
    assert set(answers) == {seed_address}
    # So the join goes on: another attempt reaches the seed later.
    now, again = 0.01, list[bytes]()
    while now < 10 and not again:
        now = core.next_deadline() or 10
        core.tick(now)
        while (request := core.next_stream()) is not None:
            core.stream_reply(request.token, None, now)
        again = [d for a, d in iter(core.next_datagram, None) if a == seed_address]
    assert again
    assert not [e for e in iter(core.next_event, None) if isinstance(e, Joined)]


def test_after_a_failed_state_stream_the_next_exchanges_go_over_udp_for_a_while() -> None:
    core = Swim(Config(), "10.0.0.1:1", rng=random.Random(8), incarnation=1, now=0)
    core.join(["10.0.0.2:1"], 0.0)
    request = core.next_stream()
    assert request is not None
    core.stream_reply(request.token, None, 0.5)  # timed out, say
    assert core.next_datagram() is not None  # the fallback, over UDP
    core.join(["10.0.0.2:1"], 30.0)
    assert core.next_stream() is None
    assert core.next_datagram() is not None
    core.join(["10.0.0.2:1"], 61.0)  # a minute later TCP is tried again
    assert core.next_stream() is not None
