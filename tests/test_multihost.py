"""Members on separate hosts: one network namespace per host, one process per member.

Each host is a namespace with one address of its own, on a veth pair or on a
bridge (held by a namespace of its own: nothing here touches the machine's
interfaces). Each member binds the wildcard ``0.0.0.0`` and advertises its
host's address, as a member in a container or a pod does. The members are
``trio-swim run`` itself or ``multihost_member.py``, a script driven over
stdin and stdout. Everything is deleted afterwards, also when a test fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import pytest
import trio

from netns import network_namespace

pytestmark = pytest.mark.netns

HELPER = Path(__file__).with_name("multihost_member.py")
PORT = 9999
# A private range used by nothing else on these machines (see `ip -br addr`).
PAIR_IPS = ("10.57.0.1", "10.57.0.2")
BRIDGED_IPS = tuple(f"10.57.1.{i}" for i in range(1, 6))
SEED_NAME = "swim-seeds.test"
# A 100 ms period, and a suspicion that ends after at most 2 x 4 periods
# (with two members nobody confirms it, so it runs to its longest).
FAST_SETTINGS: dict[str, Any] = {"heartbeat_millis": 100, "suspicion_max_timeout_mult": 2}
# Bounds of the waits: each is met in about a second on this machine.
START_TIMEOUT = 20.0
CONVERGE_TIMEOUT = 15.0
DETECT_TIMEOUT = 15.0
# Longest stdout line read from a member process.
MAX_LINE = 1_048_576


# ------------------------------------------------------------------ the hosts


def _ip(*arguments: str) -> None:
    done = subprocess.run(
        ["ip", *arguments], capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"'ip {' '.join(arguments)}' failed: {done.stderr.strip()}")


@pytest.fixture
def pair() -> Iterator[tuple[str, str]]:
    """Two hosts joined by a veth pair, at 10.57.0.1 and 10.57.0.2."""
    with ExitStack() as stack:
        a, b = (stack.enter_context(network_namespace(["link set lo up"])) for _ in range(2))
        # Made in one namespace with its peer placed straight into the other.
        _ip("-n", a, "link", "add", "swim0", "type", "veth", "peer", "name", "swim0", "netns", b)
        for namespace, ip in zip((a, b), PAIR_IPS, strict=True):
            _ip("-n", namespace, "addr", "add", f"{ip}/24", "dev", "swim0")
            _ip("-n", namespace, "link", "set", "swim0", "up")
        yield a, b


@pytest.fixture
def bridged() -> Iterator[list[str]]:
    """Five hosts on one bridge, at 10.57.1.1 to 10.57.1.5; the bridge has a namespace too."""
    with ExitStack() as stack:
        hub = stack.enter_context(network_namespace(["link add swimbr type bridge"]))
        hosts = [stack.enter_context(network_namespace(["link set lo up"])) for _ in BRIDGED_IPS]
        for port, (host, ip) in enumerate(zip(hosts, BRIDGED_IPS, strict=True), 1):
            _ip("-n", hub, "link", "add", f"p{port}", "type", "veth", "peer", "eth0", "netns", host)
            _ip("-n", hub, "link", "set", f"p{port}", "master", "swimbr", "up")
            _ip("-n", host, "addr", "add", f"{ip}/24", "dev", "eth0")
            _ip("-n", host, "link", "set", "eth0", "up")
        _ip("-n", hub, "link", "set", "swimbr", "up")
        yield hosts


# ------------------------------------------------------------ the processes


class MemberProcess:
    """A process in a namespace: its stdout read as JSON lines, its stderr in a file."""

    def __init__(self, label: str, process: trio.Process, stderr: Path) -> None:
        self.label = label
        self.process = process
        self.stderr_path = stderr
        self.lines: list[dict[str, Any]] = []
        """Every line read from stdout so far."""
        self._pending = b""

    def stderr(self) -> str:
        """What the process wrote on stderr so far."""
        return self.stderr_path.read_text(errors="replace")

    def _failure(self, what: str) -> AssertionError:
        return AssertionError(
            f"{self.label}: {what}\n--- stdout lines:\n"
            + "\n".join(map(json.dumps, self.lines[-20:]))
            + f"\n--- stderr:\n{self.stderr()[-4000:]}"
        )

    async def _line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        while b"\n" not in self._pending:
            chunk = await self.process.stdout.receive_some(65_536)
            if not chunk:
                raise self._failure(f"stdout ended (exit status {self.process.poll()})")
            if len(self._pending) > MAX_LINE:
                raise self._failure("a line over 1 MiB")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        record: dict[str, Any] = json.loads(line)
        self.lines.append(record)
        return record

    async def expect(self, matches: Callable[[dict[str, Any]], bool], within: float) -> Any:
        """Read lines until one ``matches``; return it (fail after ``within`` s)."""
        with trio.move_on_after(within):
            while True:
                record = await self._line()
                if matches(record):
                    return record
        raise self._failure(f"no matching line within {within:g} s")

    async def ask(self, **command: Any) -> Any:
        """Send one command to ``multihost_member.py`` and return its answer."""
        await self.send_line(json.dumps(command))
        timeout = float(command.get("timeout", 0)) + 10
        return await self.expect(lambda record: True, timeout)

    async def send_line(self, text: str) -> None:
        """Write one line on the process's stdin."""
        assert self.process.stdin is not None
        await self.process.stdin.send_all(text.encode() + b"\n")

    async def wait_stderr(self, text: str, within: float) -> str:
        """Wait until ``text`` appears on stderr (at most ``within`` s); return all of stderr."""
        with trio.move_on_after(within):
            while text not in (log := self.stderr()):
                if self.process.poll() is not None:
                    break
                await trio.sleep(0.02)
            else:
                return log
        raise self._failure(f"{text!r} not on stderr within {within:g} s")


class Processes:
    """Starts member processes in namespaces; kills those still running on exit."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._started: list[MemberProcess] = []
        self._files: list[IO[bytes]] = []

    async def __aenter__(self) -> Processes:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with trio.CancelScope(shield=True):
            for member in self._started:
                if member.process.poll() is None:
                    member.process.kill()
                with trio.move_on_after(10):
                    await member.process.wait()
        for file in self._files:
            file.close()

    async def start(
        self, label: str, namespace: str, argv: Sequence[str], env: dict[str, str] | None = None
    ) -> MemberProcess:
        """Run ``argv`` in ``namespace``, with no SWIM_* variable but those of ``env``."""
        stderr_path = self._directory / f"{label.split()[0]}.stderr"
        stderr = stderr_path.open("wb")
        self._files.append(stderr)
        environment = {k: v for k, v in os.environ.items() if not k.startswith("SWIM_")}
        process = await trio.lowlevel.open_process(
            ["ip", "netns", "exec", namespace, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=environment | (env or {}),
        )
        member = MemberProcess(label, process, stderr_path)
        self._started.append(member)
        return member

    async def start_script(
        self, label: str, namespace: str, config: dict[str, Any], hosts: dict[str, list[str]]
    ) -> MemberProcess:
        """Run ``multihost_member.py`` with these Config settings and resolvable names."""
        spec = {"config": config, "hosts": hosts}
        return await self.start(label, namespace, [sys.executable, str(HELPER), json.dumps(spec)])


def _wildcard_member(advertised_ip: str, initial_hosts: list[str]) -> dict[str, Any]:
    return {
        "listen_ip": "0.0.0.0",
        "listen_port": PORT,
        "advertise_address": f"{advertised_ip}:{PORT}",
        "initial_hosts": initial_hosts,
        **FAST_SETTINGS,
    }


def _status(node: str, status: str) -> Callable[[dict[str, Any]], bool]:
    """Matches a ``trio-swim run --json`` line: ``node`` became ``status``."""

    def matches(record: dict[str, Any]) -> bool:
        return bool(
            record.get("event") == "status"
            and record.get("node") == node
            and record.get("status") == status
        )

    return matches


# ------------------------------------------------------------------ the tests


async def test_two_hosts_bind_the_wildcard_and_advertise_their_own_address(
    pair: tuple[str, str], tmp_path: Path
) -> None:
    """``trio-swim run`` on host a, the script on host b: both bind 0.0.0.0:9999.

    Each sees the other ALIVE under its advertised address, a reliable
    message crosses over TCP, a broadcast over UDP, and killing b is seen by a.
    """
    a_address, b_address = (f"{ip}:{PORT}" for ip in PAIR_IPS)
    async with Processes(tmp_path) as processes:
        a = await processes.start(
            "a (trio-swim run)",
            pair[0],
            [
                *(sys.executable, "-m", "trio_swim", "run", "--json"),
                *("--listen", f"0.0.0.0:{PORT}", "--advertise", a_address, "--heartbeat-ms", "100"),
            ],
            env={
                "SWIM_SUSPICION_MAX_TIMEOUT_MULT": str(FAST_SETTINGS["suspicion_max_timeout_mult"])
            },
        )
        log = await a.wait_stderr("listening on", START_TIMEOUT)
        assert f"listening on {a_address} (cluster 'trio-swim') (bound to 0.0.0.0:{PORT})" in log

        b = await processes.start_script(
            "b (multihost_member.py)", pair[1], _wildcard_member(PAIR_IPS[1], [a_address]), {}
        )
        started = await b.expect(lambda record: "started" in record, START_TIMEOUT)
        assert started == {"started": b_address, "bound": f"0.0.0.0:{PORT}"}

        seen = await b.ask(
            do="wait_alive", addresses=[a_address, b_address], timeout=CONVERGE_TIMEOUT
        )
        assert seen["ok"], seen
        assert seen["view"] == {a_address: "alive", b_address: "alive"}
        joined = await a.expect(_status(b_address, "alive"), CONVERGE_TIMEOUT)
        assert joined["member"] == a_address

        sent = await b.ask(do="send_reliable", address=a_address, payload="over tcp")
        assert sent["ok"], sent
        message = await a.expect(lambda record: record.get("event") == "message", 10)
        assert (message["origin"], message["payload"], message["reliable"]) == (
            b_address,
            "over tcp",
            True,
        )

        await a.send_line("over udp")  # trio-swim run broadcasts each line of stdin
        got = await b.ask(do="received", count=1, timeout=10)
        assert got["received"] == [
            {"kind": "broadcast", "origin": a_address, "payload": "over udp"}
        ]

        # SIGKILL: no leave, the host stays up, its port closes.
        b.process.kill()
        await a.expect(_status(b_address, "suspect"), DETECT_TIMEOUT)
        await a.expect(_status(b_address, "dead"), DETECT_TIMEOUT)

        assert not any("0.0.0.0" in json.dumps(line) for line in a.lines), a.lines
        a.process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await a.process.wait() == 0, a.stderr()
        assert f"leaving the cluster as {a_address}" in a.stderr()


async def test_five_hosts_join_through_one_name_that_resolves_to_all_of_them(
    bridged: list[str], tmp_path: Path
) -> None:
    """Every member's only seed is one name with the five addresses, first 10.57.1.1.

    Host 1 starts last: hosts 2 to 5 can only find each other if the name
    is joined through all of its addresses, not just the first. Then all
    five converge, each listing the five advertised addresses.
    """
    addresses = [f"{ip}:{PORT}" for ip in BRIDGED_IPS]
    names = {SEED_NAME: list(BRIDGED_IPS)}
    async with Processes(tmp_path) as processes:

        async def start(index: int) -> MemberProcess:
            member = await processes.start_script(
                f"host{index + 1}",
                bridged[index],
                _wildcard_member(BRIDGED_IPS[index], [SEED_NAME]),
                names,
            )
            return member

        later = [await start(index) for index in range(1, 5)]
        for index, member in enumerate(later, 1):
            started = await member.expect(lambda record: "started" in record, START_TIMEOUT)
            assert started == {"started": addresses[index], "bound": f"0.0.0.0:{PORT}"}
        for member in later:
            seen = await member.ask(
                do="wait_alive", addresses=addresses[1:], timeout=CONVERGE_TIMEOUT
            )
            assert seen["ok"], (member.label, seen)

        first = await start(0)
        await first.expect(lambda record: "started" in record, START_TIMEOUT)
        for member in [first, *later]:
            seen = await member.ask(do="wait_alive", addresses=addresses, timeout=CONVERGE_TIMEOUT)
            assert seen["ok"], (member.label, seen)
            assert seen["view"] == dict.fromkeys(addresses, "alive"), member.label

        for member in [first, *later]:
            lookups = (await member.ask(do="lookups"))["lookups"]
            assert lookups, f"{member.label} never looked {SEED_NAME} up"
            assert all(
                (lookup["host"], lookup["answer"]) == (SEED_NAME, list(BRIDGED_IPS))
                for lookup in lookups
            ), lookups
