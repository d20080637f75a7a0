"""Multicast discovery and cluster isolation.

The multicast tests run their members in a network namespace they create
(see ``netns.py``) and skip, saying why, where that is not possible. The
isolation tests of the unicast path run on the simulated network.
"""

from __future__ import annotations

import errno
import socket
import sys
from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio
import trio.testing

from trio_swim import Config, ConfigError, Member, Status, open_member
from trio_swim.discovery import (
    DEFAULT_GROUP_V4,
    DEFAULT_GROUP_V6,
    interface_index,
    multicast_group,
)
from trio_swim.testing import SimNetwork
from trio_swim.wire import Announce, Codec, Update, WireStatus

from netns import (
    IPV4_LOOPBACK,
    IPV6_ADDRESSES,
    IPV6_VETH,
    MemberSpec,
    Report,
    Scenario,
    network_namespace,
    run_scenario,
)
from simcluster import status_seen, wait_until

# ------------------------------------------------------------ configuration


def test_multicast_is_off_unless_asked_for() -> None:
    assert Config().multicast_enabled is False


@pytest.mark.parametrize(
    ("settings", "group"),
    [
        ({}, DEFAULT_GROUP_V4),
        ({"listen_ip": "::1"}, DEFAULT_GROUP_V6),
        ({"multicast_address": "239.1.2.3"}, "239.1.2.3"),
        ({"listen_ip": "::1", "multicast_address": "ff05::7"}, "ff05::7"),
    ],
)
def test_group_defaults_to_the_family_of_listen_ip(settings: dict[str, Any], group: str) -> None:
    assert multicast_group(Config(**settings)) == group


def test_default_groups_are_scoped_to_the_local_network() -> None:
    import ipaddress

    v4 = ipaddress.IPv4Address(DEFAULT_GROUP_V4)
    v6 = ipaddress.IPv6Address(DEFAULT_GROUP_V6)
    assert v4 in ipaddress.IPv4Network("239.255.0.0/16")  # IPv4 local scope (RFC 2365)
    assert v6.is_multicast
    assert v6.packed[1] & 0x0F == 2  # IPv6 link-local scope


async def test_group_of_the_other_family_is_a_config_error() -> None:
    config = Config(listen_port=0, multicast_enabled=True, multicast_address="ff02::1")
    with pytest.raises(ConfigError, match="multicast_address='ff02::1': must be an IPv4 group"):
        async with open_member(config):
            pytest.fail("the member started")


async def test_group_port_held_exclusively_is_an_error_from_open_member() -> None:
    # A socket bound without SO_REUSEADDR keeps the port to itself. Binding
    # a group address joins nothing and sends nothing.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind((DEFAULT_GROUP_V4, 0))
        port = holder.getsockname()[1]
        config = Config(listen_port=0, multicast_enabled=True, multicast_port=port)
        with pytest.raises(OSError, match=f"{DEFAULT_GROUP_V4}:{port}") as caught:
            async with open_member(config):
                pytest.fail("the member started")
    assert caught.value.errno == errno.EADDRINUSE


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")
def test_interface_index_of_ipv6_addresses() -> None:
    loopback = socket.if_nametoindex("lo")
    assert interface_index("::1") == loopback
    assert interface_index("fe80::1%lo") == loopback
    assert interface_index(f"fe80::1%{loopback}") == loopback
    assert interface_index("2001:db8::1") == 0  # documentation prefix: no one holds it
    assert interface_index("fe80::1%no-such-interface") == 0


# ------------------------------------------------ announcements, simulated


def _announcement(cluster: str, sender: str) -> bytes:
    record = Update(sender, WireStatus.ALIVE, 0, sender)
    return Codec(cluster, Config().max_packet_bytes).encode(sender, [Announce(), record])


def _addresses(member: Member) -> set[str]:
    return {node.address for node in member.healthy_members()}


async def test_announcement_of_this_cluster_joins_announcer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(seed=5)
    async with (
        net.open_member(Config(listen_port=1)) as a,
        net.open_member(Config(listen_port=2)) as b,
    ):
        await trio.sleep(5)
        assert _addresses(a) == {a.address}
        a.receive_datagram(_announcement(a.config.cluster_name, b.address))
        await wait_until(lambda: _addresses(a) == _addresses(b) == {a.address, b.address}, within=2)
        assert a.statistics().dropped_foreign_cluster == 0


async def test_announcement_of_another_cluster_is_dropped_and_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(seed=5)
    async with (
        net.open_member(Config(listen_port=1)) as a,
        net.open_member(Config(listen_port=2, cluster_name="elsewhere")) as b,
    ):
        a.receive_datagram(_announcement("elsewhere", b.address))
        a.receive_datagram(_announcement("elsewhere", "127.0.0.1:3"))
        await trio.sleep(10)
        assert a.statistics().dropped_foreign_cluster == 2
        assert _addresses(a) == {a.address}
        assert a.statistics().packets_sent == 0  # not even a reply


# ----------------------------------------------- unicast cluster isolation


async def test_clusters_sharing_hosts_and_seeded_across_never_merge(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(seed=11)
    red = [f"127.0.0.1:{port}" for port in (101, 102, 103)]
    blue = [f"127.0.0.2:{port}" for port in (101, 102, 103)]
    configs = []
    for i in range(3):
        # Each member's seeds hold its own cluster's first member and a
        # member of the other cluster.
        configs.append(
            Config(cluster_name="red", listen_port=101 + i, initial_hosts=[red[0], blue[i]])
        )
        configs.append(
            Config(
                cluster_name="blue",
                listen_ip="127.0.0.2",
                listen_port=101 + i,
                initial_hosts=[blue[0], red[i]],
            )
        )
    async with AsyncExitStack() as stack:
        members = [await stack.enter_async_context(net.open_member(c)) for c in configs]
        await trio.sleep(60)
        for member in members:
            own = set(red if member.config.cluster_name == "red" else blue)
            assert {node.address for node in member.members()} == own
            assert _addresses(member) == own
            assert member.statistics().dropped_foreign_cluster > 0


async def test_member_of_another_cluster_taking_over_an_address_stays_apart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = SimNetwork(seed=12)
    first = "127.0.0.1:1"
    async with AsyncExitStack() as stack:
        red = [
            await stack.enter_async_context(
                net.open_member(Config(listen_port=port, initial_hosts=[first]))
            )
            for port in (1, 2, 3)
        ]
        await wait_until(lambda: all(len(m.healthy_members()) == 3 for m in red), within=10)
        taken = red[2].address
        net.crash(taken)
        blue_config = Config(cluster_name="blue", listen_port=3, initial_hosts=[first])
        async with net.open_member(blue_config) as blue:
            await trio.sleep(60)
            for member in red[:2]:
                assert status_seen(member, taken) in (Status.DEAD, None)
            # Blue's join went to the first red member, which dropped it.
            assert red[0].statistics().dropped_foreign_cluster > 0
            assert [node.address for node in blue.members()] == [taken]
            assert blue.statistics().dropped_foreign_cluster > 0


# ------------------------------------------- multicast, in a namespace


def _scenario(cluster: list[str], stranger: str | None, *, interval: float, junk: bool) -> Scenario:
    members: list[MemberSpec] = [{"ip": ip, "cluster": "alpha"} for ip in cluster]
    if stranger is not None:
        members.append({"ip": stranger, "cluster": "beta"})
    return {
        "members": members,
        "announce_interval": interval,
        "start_gap": 0.1,
        "converge_timeout": 20.0,
        "settle": 1.5,
        "junk": junk,
    }


def _check_found_and_isolated(report: Report) -> None:
    """Alpha members see exactly each other, beta sees only itself; drops are counted."""
    assert report["converged"], report
    alpha = {m["address"] for m in report["members"] if m["cluster"] == "alpha"}
    assert len(alpha) == 3
    for member in report["members"]:
        own = alpha if member["cluster"] == "alpha" else {member["address"]}
        # Converged means all ALIVE at one moment; a snapshot taken later
        # may catch a probe that missed its ack on a busy machine.
        assert set(member["view"]) == own, member
        stats = member["stats"]
        assert stats["dropped_foreign_cluster"] > 0, member
        # Exactly the scenario's junk: the member's own announcements, looped
        # back to it, are not counted as malformed.
        for counter, sent in report["junk"].items():
            assert stats[counter] == sent, (counter, member)
        assert stats["send_errors"] == 0, member
        # Announced at start and every 0.3 s for well over a second.
        assert report["announcements"][member["address"]] >= 4, report["announcements"]


@pytest.mark.netns
def test_ipv4_members_find_each_other_by_multicast() -> None:
    scenario = _scenario(
        ["127.0.0.1", "127.0.0.2", "127.0.0.3"], "127.0.0.4", interval=0.3, junk=True
    )
    with network_namespace(IPV4_LOOPBACK) as namespace:
        report = run_scenario(namespace, scenario)
    _check_found_and_isolated(report)


@pytest.mark.netns
def test_ipv6_members_find_each_other_by_multicast() -> None:
    scenario = _scenario(list(IPV6_ADDRESSES[:3]), IPV6_ADDRESSES[3], interval=0.3, junk=True)
    with network_namespace(IPV6_VETH) as namespace:
        report = run_scenario(namespace, scenario)
    assert all(m["address"].startswith("[fd00:5357::") for m in report["members"])
    _check_found_and_isolated(report)


@pytest.mark.netns
def test_interval_zero_announces_once_and_members_on_one_address_share_the_port() -> None:
    # Started one after another, each member hears the later ones' single
    # announcement; all three bind the same group port on the same address.
    scenario = _scenario(["127.0.0.1"] * 3, None, interval=0, junk=False)
    with network_namespace(IPV4_LOOPBACK) as namespace:
        report = run_scenario(namespace, scenario)
    assert report["converged"], report
    addresses = [m["address"] for m in report["members"]]
    assert report["announcements"] == dict.fromkeys(addresses, 1)
    for member in report["members"]:
        assert set(member["view"]) == set(addresses)
        assert member["stats"]["dropped_malformed"] == 0
