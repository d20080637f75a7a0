"""Helpers for cluster tests on SimNetwork."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import trio

from trio_swim import Config, Event, Member, Status
from trio_swim.testing import SimNetwork


def address(port: int) -> str:
    """Simulated address of the member on ``port``."""
    return f"127.0.0.1:{port}"


@asynccontextmanager
async def open_cluster(
    net: SimNetwork, size: int, *, first_port: int = 1, join: str | None = None, **settings: Any
) -> AsyncIterator[list[Member]]:
    """``size`` members on consecutive ports; all join ``join``, or else the first."""
    async with AsyncExitStack() as stack:
        members = []
        for i in range(size):
            hosts = [join] if join is not None else [address(first_port)] if i else []
            cfg = Config(listen_port=first_port + i, initial_hosts=hosts, **settings)
            members.append(await stack.enter_async_context(net.open_member(cfg)))
        yield members


def status_seen(member: Member, target: str) -> Status | None:
    """What ``member`` believes of ``target`` (None: unknown)."""
    for node in member.members():
        if node.address == target:
            return node.status
    return None


async def wait_until(condition: Callable[[], bool], *, within: float, step: float = 0.05) -> float:
    """Wait (virtual time) until ``condition()``; return how long it took."""
    start = trio.current_time()
    with trio.fail_after(within):
        while not condition():
            await trio.sleep(step)
    return trio.current_time() - start


def everyone_sees(members: list[Member], target: str, status: Status) -> Callable[[], bool]:
    """A condition: every member other than ``target`` sees it with ``status``."""
    return lambda: all(status_seen(m, target) is status for m in members if m.address != target)


def converged(members: list[Member]) -> Callable[[], bool]:
    """A condition: every member sees every member ALIVE."""
    return lambda: all(len(m.healthy_members()) == len(members) for m in members)


class Recorder:
    """Records every event of several members with the virtual time it arrived."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, Event]] = []

    async def watch(self, nursery: trio.Nursery, members: list[Member]) -> None:
        """Subscribe to each member now and record in background tasks."""
        for member in members:
            nursery.start_soon(self._record, member.address, member.events())

    async def _record(self, who: str, stream: AsyncIterator[Event]) -> None:
        async for event in stream:
            self.events.append((trio.current_time(), who, event))


@asynccontextmanager
async def watched_cluster(
    net: SimNetwork, size: int, *, within: float = 30, **settings: Any
) -> AsyncIterator[tuple[list[Member], Recorder]]:
    """A converged cluster whose events are recorded from then on, until exit."""
    async with open_cluster(net, size, **settings) as members, trio.open_nursery() as nursery:
        await wait_until(converged(members), within=within)
        recorder = Recorder()
        await recorder.watch(nursery, members)
        yield members, recorder
        nursery.cancel_scope.cancel()


def has_ipv6_loopback() -> bool:
    """True if this machine can bind ::1."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True
