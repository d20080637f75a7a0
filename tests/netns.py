"""Throwaway network namespaces for tests, and the member scenarios run in them.

A test opens a namespace with :func:`network_namespace` (it skips, with the
reason, where namespaces cannot be made) and calls :func:`run_scenario`, which
runs this file as a script inside the namespace::

    ip netns exec NAME python netns.py '<scenario as JSON>'

The script starts the members the scenario lists, lets them find each other by
multicast, and prints one JSON object (a :class:`Report`) with what each
member saw. The namespace is deleted afterwards, also when the test fails.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import AsyncExitStack, contextmanager
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from trio_swim import Config, Member
    from trio_swim.discovery import MulticastSocket

# IPv4 multicast between sockets of one namespace, over its loopback.
IPV4_LOOPBACK = (
    "link set lo up",
    "link set lo multicast on",
    "route add 224.0.0.0/4 dev lo",
)
# Linux's loopback does not carry IPv6 multicast: a veth pair stands in for
# an ethernet link, with addresses that need no duplicate detection.
IPV6_ADDRESSES = tuple(f"fd00:5357::{i}" for i in range(1, 5))
IPV6_VETH = (
    "link set lo up",
    "link add swim0 type veth peer name swim1",
    "link set swim0 up",
    "link set swim1 up",
    *(f"-6 addr add {address}/64 dev swim0 nodad" for address in IPV6_ADDRESSES),
)

_names = itertools.count()


def skip_reason() -> str | None:
    """Why this process cannot make network namespaces, or None if it can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are a Linux feature"
    if os.geteuid() != 0:
        return "creating a network namespace needs root"
    if shutil.which("ip") is None:
        return "the iproute2 'ip' command is not installed"
    return None


@contextmanager
def network_namespace(setup: Sequence[str]) -> Iterator[str]:
    """Create a namespace, run each ``ip`` command of ``setup`` in it, yield its name.

    Skips the test when namespaces are unavailable; deletes the namespace on exit.
    """
    import pytest

    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    name = f"swimtest-{os.getpid()}-{next(_names)}"
    added = subprocess.run(
        ["ip", "netns", "add", name], capture_output=True, text=True, timeout=30, check=False
    )
    if added.returncode != 0:
        pytest.skip(f"'ip netns add' failed: {added.stderr.strip()}")
    try:
        for command in setup:
            done = subprocess.run(
                ["ip", "-n", name, *command.split()],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"'ip {command}' in {name} failed: {done.stderr.strip()}")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30, check=False)


class MemberSpec(TypedDict):
    """One member to start: its address and cluster."""

    ip: str
    cluster: str


class Scenario(TypedDict):
    """What the script inside the namespace does."""

    members: list[MemberSpec]
    announce_interval: float
    """``multicast_announce_interval`` of every member."""
    start_gap: float
    """Seconds between starting one member and the next."""
    converge_timeout: float
    """Longest wait for every member to see exactly its own cluster."""
    settle: float
    """Seconds the members keep running after that (or after the timeout)."""
    junk: bool
    """Send undecodable, wrong-version and oversized datagrams to the group."""


class MemberReport(TypedDict):
    """What one member saw."""

    address: str
    cluster: str
    view: dict[str, str]
    """Every member it knows, with the status it gives it."""
    stats: dict[str, int]


class Report(TypedDict):
    """The script's output."""

    members: list[MemberReport]
    converged: bool
    converged_after: float
    announcements: dict[str, int]
    """Announcements heard on the group from each sender."""
    junk: dict[str, int]
    """Datagrams sent by the scenario itself, by the drop counter they should raise."""


def run_scenario(namespace: str, scenario: Scenario, *, timeout: float = 90.0) -> Report:
    """Run ``scenario`` in ``namespace`` (a separate Python process) and return its report."""
    done = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, __file__, json.dumps(scenario)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"scenario failed ({done.returncode}):\n{done.stderr}")
    report: Report = json.loads(done.stdout.strip().splitlines()[-1])
    return report


# ------------------------------------------------------------------ the script
# Everything below runs inside the namespace, in its own process.

_STATISTICS = (
    "dropped_foreign_cluster",
    "dropped_malformed",
    "dropped_version",
    "dropped_oversized",
    "packets_received",
    "send_errors",
)


async def _run(scenario: Scenario) -> Report:
    import trio

    import trio_swim
    from trio_swim.discovery import DEFAULT_GROUP_V4, DEFAULT_GROUP_V6, open_multicast_socket

    specs = scenario["members"]
    configs = [
        trio_swim.Config(
            cluster_name=spec["cluster"],
            listen_ip=spec["ip"],
            listen_port=0,
            heartbeat_millis=200,
            probe_timeout_millis=100,
            multicast_enabled=True,
            multicast_announce_interval=scenario["announce_interval"],
        )
        for spec in specs
    ]
    first_ip = specs[0]["ip"]
    group = DEFAULT_GROUP_V6 if ":" in first_ip else DEFAULT_GROUP_V4
    # A socket of the scenario's own on the group: it counts the
    # announcements and sends the junk.
    listener = open_multicast_socket(first_ip, group, configs[0].multicast_port)
    announcements: dict[str, int] = {}
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_count_announcements, listener, announcements)
            async with AsyncExitStack() as stack:
                members: list[trio_swim.Member] = []
                for config in configs:
                    if members:
                        await trio.sleep(scenario["start_gap"])
                    members.append(await stack.enter_async_context(trio_swim.open_member(config)))
                started = trio.current_time()
                junk = await _send_junk(listener, configs[0]) if scenario["junk"] else {}
                converged = await _wait_for_clusters(specs, members, scenario["converge_timeout"])
                converged_after = trio.current_time() - started
                await trio.sleep(scenario["settle"])
                reports = [
                    _report(spec, member) for spec, member in zip(specs, members, strict=True)
                ]
            nursery.cancel_scope.cancel()
    finally:
        listener.close()
    return {
        "members": reports,
        "converged": converged,
        "converged_after": converged_after,
        "announcements": announcements,
        "junk": junk,
    }


async def _count_announcements(listener: MulticastSocket, counts: dict[str, int]) -> None:
    import msgspec

    from trio_swim.wire import Announce, Packet

    decoder = msgspec.msgpack.Decoder(Packet)
    while True:
        data = await listener.receive(65_536)
        try:
            packet = decoder.decode(data)
        except msgspec.DecodeError:
            continue
        if any(isinstance(message, Announce) for message in packet.messages):
            counts[packet.sender] = counts.get(packet.sender, 0) + 1


async def _send_junk(listener: MulticastSocket, config: Config) -> dict[str, int]:
    """Send datagrams every member must drop; return how many of each kind."""
    import msgspec

    garbage = [b"\x00 not msgpack at all", b"\x94\x01"]
    newer_version = msgspec.msgpack.encode([99, config.cluster_name, "127.0.0.1:1", []])
    oversized = b"\x00" * (config.max_packet_bytes + 50)
    for data in [*garbage, newer_version, oversized]:
        if not await listener.send(data):
            raise RuntimeError("the scenario could not send to the group")
    return {"dropped_malformed": len(garbage), "dropped_version": 1, "dropped_oversized": 1}


async def _wait_for_clusters(
    specs: list[MemberSpec], members: list[Member], timeout: float
) -> bool:
    """Wait until each member sees exactly the members of its cluster ALIVE."""
    import trio

    clusters: dict[str, set[str]] = {}
    for spec, member in zip(specs, members, strict=True):
        clusters.setdefault(spec["cluster"], set()).add(member.address)
    wanted = [clusters[spec["cluster"]] for spec in specs]
    with trio.move_on_after(timeout):
        # Polled: membership has no single event that says "complete".
        while True:
            if [{n.address for n in m.healthy_members()} for m in members] == wanted:
                return True
            await trio.sleep(0.05)
    return False


def _report(spec: MemberSpec, member: Member) -> MemberReport:
    import msgspec

    stats = msgspec.structs.asdict(member.statistics())
    return {
        "address": member.address,
        "cluster": spec["cluster"],
        "view": {node.address: str(node.status) for node in member.members()},
        "stats": {name: int(stats[name]) for name in _STATISTICS},
    }


def _main() -> None:
    import trio

    scenario: Scenario = json.loads(sys.argv[1])
    report = trio.run(_run, scenario)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    _main()
