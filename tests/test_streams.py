"""Messages and the TCP stream listener on real sockets (127.0.0.1 and ::1, real clock)."""

from __future__ import annotations

import resource
import struct
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio

from trio_swim import (
    Config,
    DeliveryFailed,
    Member,
    MessageReceived,
    Status,
    open_member,
    testing,
)
from trio_swim.addresses import split_address
from trio_swim.transport import MAX_STREAM_CONNECTIONS
from trio_swim.wire import STREAM_MAGIC

from simcluster import has_ipv6_loopback, wait_until


def fast(ip: str, **settings: Any) -> Config:
    return Config(
        listen_ip=ip,
        listen_port=0,
        heartbeat_millis=100,
        probe_timeout_millis=50,
        gossip_interval_millis=50,
        **settings,
    )


@asynccontextmanager
async def pair(ip: str, **settings: Any) -> AsyncIterator[tuple[Member, Member]]:
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(open_member(fast(ip, **settings)))
        b = await stack.enter_async_context(
            open_member(fast(ip, initial_hosts=[a.address], **settings))
        )
        with trio.fail_after(10):
            await b.wait_joined()
        await testing.wait_converged(a, b, timeout=10)
        yield a, b


async def assert_cut(stream: trio.SocketStream, within: float) -> None:
    """The member closes ``stream`` (cleanly, or with a reset) within ``within`` s."""
    with trio.fail_after(within):
        try:
            assert await stream.receive_some(100) == b""
        except trio.BrokenResourceError:
            pass
    await stream.aclose()


async def next_message(member: Member, stream: AsyncIterator[object]) -> MessageReceived:
    with trio.fail_after(5):
        async for event in stream:
            if isinstance(event, MessageReceived):
                return event
    raise AssertionError("stream ended")


@pytest.mark.parametrize("ip", ["127.0.0.1", "::1"])
async def test_send_and_send_reliable_between_two_real_members(ip: str) -> None:
    if ip == "::1" and not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    async with pair(ip, metadata=b"api=8080") as (a, b):
        events = b.events()
        await a.send(b.address, b"one datagram")
        got = await next_message(b, events)
        assert (got.origin, got.payload, got.reliable) == (a.address, b"one datagram", False)
        big = bytes(range(256)) * 2000  # 512 kB: many datagrams' worth
        await a.send_reliable(b.address, big)
        got = await next_message(b, events)
        assert (got.origin, got.payload, got.reliable) == (a.address, big, True)
        node = b.get(a.address)
        assert node is not None
        assert node.metadata == b"api=8080"
        assert a.statistics().stream_exchanges >= 1
        assert b.statistics().streams_accepted >= 1


async def test_send_reliable_to_a_closed_port_fails_at_once() -> None:
    async with pair("127.0.0.1", stream_timeout_millis=2000) as (a, b):
        gone = b.address
    async with open_member(fast("127.0.0.1", initial_hosts=[a.address])) as c:
        started = trio.current_time()
        with pytest.raises(DeliveryFailed):
            await c.send_reliable(gone, b"hello?")
        assert trio.current_time() - started < 2.0


async def test_the_stream_listener_cuts_hostile_connections_and_the_member_carries_on() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2_000 + 500
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the file descriptor limit {hard} is below {wanted}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    try:
        await _attack_the_listener()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def _attack_the_listener() -> None:
    settings = {"stream_timeout_millis": 2000, "max_stream_bytes": 100_000}
    async with pair("127.0.0.1", **settings) as (a, b):
        host, port = split_address(a.address)

        # A frame announcing more than max_stream_bytes: cut at its header.
        oversized = await trio.open_tcp_stream(host, port)
        await oversized.send_all(STREAM_MAGIC + struct.pack(">I", 50_000_000))
        await assert_cut(oversized, 2)
        # Not a frame at all.
        junk = await trio.open_tcp_stream(host, port)
        await junk.send_all(b"GET / HTTP/1.1\r\n\r\n")
        await assert_cut(junk, 2)
        # A frame that never ends: cut at the deadline.
        endless = await trio.open_tcp_stream(host, port)
        await endless.send_all(STREAM_MAGIC + struct.pack(">I", 90_000) + b"x" * 1000)
        await assert_cut(endless, 3)
        await wait_until(lambda: a.statistics().streams_dropped >= 3, within=3)

        # 2,000 connections opened and left idle.
        idle: list[trio.SocketStream] = []
        try:
            for _ in range(2_000):
                idle.append(await trio.open_tcp_stream(host, port))
            # All but MAX_STREAM_CONNECTIONS are closed at once (a few more are
            # taken if opening 2,000 outlasts the deadline of the first ones).
            await wait_until(
                lambda: (
                    a.statistics().streams_refused >= 1_500
                    and a.statistics().streams_accepted + a.statistics().streams_refused >= 2_000
                ),
                within=5,
            )
            # Meanwhile the member works: state, probes and messages as usual.
            events = b.events()
            await a.send_reliable(b.address, b"still here")
            got = await next_message(b, events)
            assert got.payload == b"still here"
            await trio.sleep(2.5)  # the idle ones reach their deadline
            stats = a.statistics()
            assert stats.streams_dropped >= 3 + MAX_STREAM_CONNECTIONS - 1
        finally:
            for stream in idle:
                await stream.aclose()
        assert testing.converged([a, b])
        assert all(n.status is Status.ALIVE for n in a.members())
