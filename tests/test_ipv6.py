"""Members over IPv6 on real sockets on ::1 (real clock)."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from typing import Any

import pytest
import trio

from trio_swim import BroadcastReceived, Config, Member, Status, StatusChanged, open_member

from simcluster import has_ipv6_loopback, status_seen, wait_until

pytestmark = pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback (::1) here")

FAST: dict[str, Any] = {
    "listen_ip": "::1",
    "listen_port": 0,
    "heartbeat_millis": 100,
    "probe_timeout_millis": 50,
    "gossip_interval_millis": 50,
    "multicast_enabled": False,
}
V6_ADDRESS = re.compile(r"\[::1\]:\d+")

# A member in a process of its own, killed with SIGKILL by the test: it
# leaves no LEFT notice and its socket vanishes with it.
VICTIM = """
import sys

import trio
import trio_swim


async def main() -> None:
    config = trio_swim.Config(
        listen_ip="::1",
        listen_port=0,
        heartbeat_millis=100,
        probe_timeout_millis=50,
        multicast_enabled=False,
        initial_hosts=[sys.argv[1]],
    )
    async with trio_swim.open_member(config) as member:
        print(member.address, flush=True)
        await trio.sleep_forever()


trio.run(main)
"""


def _alive(member: Member) -> set[str]:
    return {node.address for node in member.healthy_members()}


def test_ipv6_addresses_in_config() -> None:
    config = Config(listen_ip="::1", initial_hosts=["[::1]:7000", "127.0.0.1:7001", "::1"])
    assert config.initial_hosts == ["[::1]:7000", "127.0.0.1:7001", "::1"]
    from_env = Config.from_env(
        {"SWIM_LISTEN_IP": "::1", "SWIM_INITIAL_HOSTS": "[::1]:7000,127.0.0.1:7001"}
    )
    assert from_env.listen_ip == "::1"
    assert from_env.initial_hosts == ["[::1]:7000", "127.0.0.1:7001"]


async def test_cluster_over_ipv6_converges_and_broadcasts() -> None:
    async with open_member(Config(**FAST)) as a:
        assert V6_ADDRESS.fullmatch(a.address)
        news = a.events()
        # The IPv4 seed cannot be reached from an IPv6 member: it is skipped.
        seeds = ["127.0.0.1:9", a.address]
        async with (
            open_member(Config(initial_hosts=seeds, **FAST)) as b,
            open_member(Config(initial_hosts=seeds, **FAST)) as c,
        ):
            everyone = {a.address, b.address, c.address}
            await wait_until(lambda: all(_alive(m) == everyone for m in (a, b, c)), within=15)
            streams = [b.events(), c.events()]
            await a.broadcast(b"over ipv6")
            with trio.fail_after(15):
                for stream in streams:
                    async for event in stream:
                        if isinstance(event, BroadcastReceived):
                            assert event == BroadcastReceived(a.address, b"over ipv6")
                            break
            assert b.statistics().dropped_foreign_cluster == 0
        joined = set()
        with trio.fail_after(5):
            async for event in news:
                if isinstance(event, StatusChanged) and event.status is Status.ALIVE:
                    assert V6_ADDRESS.fullmatch(event.node.address)
                    joined.add(event.node.address)
                if joined == everyone - {a.address}:
                    break


async def _first_line(stream: trio.abc.ReceiveStream) -> str:
    received = b""
    while b"\n" not in received:
        chunk = await stream.receive_some(1024)
        if not chunk:
            raise AssertionError(f"the victim exited before printing its address: {received!r}")
        received += chunk
    return received.split(b"\n", 1)[0].decode()


async def test_killed_member_is_declared_dead_over_ipv6() -> None:
    async with (
        open_member(Config(**FAST)) as a,
        open_member(Config(initial_hosts=[a.address], **FAST)) as b,
    ):
        news = a.events()
        async with trio.open_nursery() as nursery:
            command = [sys.executable, "-c", VICTIM, a.address]
            victim_process: trio.Process = await nursery.start(
                functools.partial(trio.run_process, command, stdout=subprocess.PIPE, check=False)
            )
            assert victim_process.stdout is not None
            with trio.fail_after(30):
                victim = await _first_line(victim_process.stdout)
            assert V6_ADDRESS.fullmatch(victim)
            await wait_until(lambda: victim in _alive(a) and victim in _alive(b), within=15)
            victim_process.kill()
        await wait_until(
            lambda: status_seen(a, victim) is status_seen(b, victim) is Status.DEAD, within=20
        )
        with trio.fail_after(5):
            async for event in news:
                if isinstance(event, StatusChanged) and event.status is Status.DEAD:
                    assert event.node.address == victim
                    break
        await wait_until(lambda: _alive(a) == _alive(b) == {a.address, b.address}, within=15)
