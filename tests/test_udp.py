"""Members on real UDP sockets on 127.0.0.1 (real clock)."""

from __future__ import annotations

import random
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio

from trio_swim import BroadcastReceived, Config, Member, Status, open_member
from trio_swim.member import run_member
from trio_swim.testing import wait_converged
from trio_swim.transport import KillableTransport, open_udp_transport

from simcluster import converged, everyone_sees, wait_until


def fast(**settings: Any) -> Config:
    """A config with a short period, so real-clock tests finish quickly."""
    return Config(
        heartbeat_millis=100, probe_timeout_millis=50, gossip_interval_millis=50, **settings
    )


@asynccontextmanager
async def udp_cluster(size: int) -> AsyncIterator[list[Member]]:
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(open_member(fast(listen_port=0)))
        members = [first]
        for _ in range(size - 1):
            cfg = fast(listen_port=0, initial_hosts=[first.address])
            members.append(await stack.enter_async_context(open_member(cfg)))
        yield members


async def test_port_zero_reports_the_bound_port() -> None:
    async with open_member(Config(listen_port=0)) as m:
        host, port = m.address.rsplit(":", 1)
        assert host == "127.0.0.1"
        assert int(port) > 0


async def test_three_members_converge_broadcast_and_see_one_leave() -> None:
    async with udp_cluster(3) as members:
        a, b, c = members
        await wait_converged(*members, timeout=10)
        stream_b, stream_c = b.events(), c.events()
        await a.broadcast(b"over udp")

        async def first_broadcast(stream: AsyncIterator[object]) -> BroadcastReceived:
            async for event in stream:
                if isinstance(event, BroadcastReceived):
                    return event
            raise AssertionError("stream ended")

        with trio.fail_after(10):
            for stream in (stream_b, stream_c):
                got = await first_broadcast(stream)
                assert (got.origin, got.payload) == (a.address, b"over udp")

        async with open_member(fast(listen_port=0, initial_hosts=[a.address])) as d:
            await wait_converged(*members, d, timeout=10)
            gone = d.address
        await wait_until(everyone_sees(members, gone, Status.LEFT), within=10)


async def test_a_killed_member_is_declared_dead() -> None:
    async with udp_cluster(2) as members:
        victim_transport = KillableTransport(await open_udp_transport("127.0.0.1", 0))
        cfg = fast(initial_hosts=[members[0].address])
        rng = random.Random(1)
        async with run_member(cfg, victim_transport, rng=rng, incarnation=1) as victim:
            await wait_converged(*members, victim, timeout=10)
            victim_transport.kill()
            await wait_until(everyone_sees(members, victim.address, Status.DEAD), within=20)


async def test_garbage_datagrams_are_counted_not_fatal() -> None:
    async with udp_cluster(2) as members:
        await wait_converged(*members, timeout=10)
        a = members[0]
        host, port = a.address.rsplit(":", 1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.sendto(b"\xc1 not msgpack", (host, int(port)))
            raw.sendto(b"\x00" * 3000, (host, int(port)))
        await wait_until(
            lambda: a.statistics().dropped_malformed + a.statistics().dropped_oversized >= 2,
            within=5,
        )
        await trio.sleep(0.5)
        assert converged(members)()


async def test_one_deeply_nested_datagram_does_not_kill_a_member() -> None:
    # 1,330 bytes: an int, a string, a sender, then 1,300 nested arrays. It
    # used to raise RecursionError out of the receive loop and open_member.
    attack = b"\x94\x07\xa1x\xa91.2.3.4:5" + b"\x91" * 1300 + b"\xc0"
    async with udp_cluster(2) as members:
        await wait_converged(*members, timeout=10)
        a = members[0]
        host, port = a.address.rsplit(":", 1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            for _ in range(5):
                raw.sendto(attack, (host, int(port)))
        await wait_until(lambda: a.statistics().dropped_malformed >= 5, within=5)
        await trio.sleep(0.5)
        assert converged(members)()


async def test_address_in_use_raises_a_clear_error() -> None:
    async with open_member(Config(listen_port=0)) as m:
        port = int(m.address.rsplit(":", 1)[1])
        with pytest.raises(OSError, match="already in use"):
            async with open_member(Config(listen_port=port)):
                raise AssertionError("bound twice")
