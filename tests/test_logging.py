"""What a member logs (logger ``trio_swim``): each line once where it belongs,
and a flood of junk gives a few lines, not one per packet."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing

from trio_swim import Config, Status
from trio_swim.testing import SimNetwork, wait_converged
from trio_swim.wire import Codec, Ping

from simcluster import address, everyone_sees, open_cluster, wait_until

LOGGER = "trio_swim"


def messages(caplog: pytest.LogCaptureFixture, text: str, level: int = logging.INFO) -> list[str]:
    return [m for _, m in logged(caplog, text, level)]


def logged(
    caplog: pytest.LogCaptureFixture, text: str, level: int = logging.INFO
) -> list[tuple[str, str]]:
    """(member, message) of the matching records."""
    return [
        (getattr(r, "member", ""), r.getMessage())
        for r in caplog.records
        if r.name.startswith(LOGGER) and r.levelno == level and text in r.getMessage()
    ]


def settings(**extra: Any) -> dict[str, Any]:
    return {"heartbeat_millis": 200, **extra}


async def test_joined_is_logged_once_and_a_dead_seed_with_backoff(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    net = SimNetwork(seed=1)
    async with open_cluster(net, 3, **settings()) as members:
        await wait_converged(*members, timeout=10)
        await trio.sleep(30)
    joined = messages(caplog, "joined via 127.0.0.1:1")
    assert len(joined) == 2  # the two that joined the first, once each
    assert {who for who, _ in logged(caplog, "joined via")} == {address(2), address(3)}
    assert "(2 members)" in joined[0] or "(3 members)" in joined[0]
    caplog.clear()
    lonely = Config(listen_port=9, initial_hosts=["127.0.0.1:99"], **settings())
    async with net.open_member(lonely):
        await trio.sleep(120)
    retries = messages(caplog, "no answer from 127.0.0.1:99, retrying in")
    # Backing off to one try in 30 s: not one line a period.
    assert 3 <= len(retries) <= 12, retries
    assert not messages(caplog, "joined via")


async def test_dead_left_refuted_and_healed_are_logged(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    net = SimNetwork(seed=2)
    async with open_cluster(net, 5, **settings()) as members:
        await wait_converged(*members, timeout=10)
        victim = members[4]
        net.crash(victim.address)
        await wait_until(everyone_sees(members[:4], victim.address, Status.DEAD), within=30)
        dead = logged(caplog, f"declared {victim.address} DEAD")
        assert 1 <= len(dead) <= 4  # by whoever's suspicion ran out first, once each
        assert len({who for who, _ in dead}) == len(dead)
        assert victim.address not in {who for who, _ in dead}

        slow = members[3]
        net.pause(slow.address, 0.6)  # long enough to be suspected, not declared
        await wait_until(
            lambda: bool(messages(caplog, "refuted a suspicion of this member")), within=20
        )

        net.partition([members[0].address], [m.address for m in members[1:4]])
        await wait_until(everyone_sees(members[1:4], members[0].address, Status.DEAD), within=60)
        net.heal()
        await wait_converged(*members[:4], timeout=120)
        assert messages(caplog, "answers again after being held DEAD: healed")
    left = logged(caplog, "left the cluster")
    assert left  # the members that left last saw the others leave
    assert len(set(left)) == len(left)  # once per member and leaver


async def test_a_junk_flood_gives_a_few_warning_lines(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    net = SimNetwork(seed=3)
    foreign = Codec("other", 1400)
    async with open_cluster(net, 2, **settings()) as (a, b):
        await wait_converged(a, b, timeout=10)
        for i in range(30_000):
            source = f"10.0.0.{i % 200 + 1}:9999"
            if i % 3 == 0:
                a.receive_datagram(foreign.encode("10.0.0.7:9999", [Ping(i)]), "10.0.0.7:9999")
            else:
                a.receive_datagram(b"\xc1junk", source)
            if i % 1000 == 0:
                await trio.sleep(0.001)
        assert not messages(caplog, "dropped", logging.WARNING)  # not per packet
        await trio.sleep(61)
        assert a.statistics().dropped_malformed == 20_000
    warnings = messages(caplog, "dropped", logging.WARNING)
    assert len(warnings) <= 6, warnings
    assert "dropped 10,000 packets of cluster 'other' from 10.0.0.7:9999 in the last 60 s" in (
        warnings
    )
    assert any(w.startswith("dropped 100 malformed packets from 10.0.0.") for w in warnings)
    assert any("more packets from" in w and "more sources" in w for w in warnings)


async def test_local_health_above_half_is_a_warning(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    net = SimNetwork(seed=4)
    async with open_cluster(net, 4, **settings()) as members:
        await wait_converged(*members, timeout=10)
        slow = members[2]
        # Everything it hears arrives late: its probes fail, it gets suspected.
        net.set_delay(slow.address, inbound=0.3)
        await wait_until(lambda: slow.statistics().local_health > 3, within=60)
    warned = messages(caplog, "local health", logging.WARNING)
    assert warned
    assert warned[0].startswith("local health 4 of 7")


async def test_probe_failures_are_debug_only(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    net = SimNetwork(seed=5)
    async with open_cluster(net, 3, **settings()) as members:
        await wait_converged(*members, timeout=10)
        net.crash(members[2].address)
        await trio.sleep(5)
    assert messages(caplog, f"probe of {address(3)} failed", logging.DEBUG)
    assert not messages(caplog, "probe of", logging.INFO)
