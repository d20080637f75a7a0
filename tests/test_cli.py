"""The trio-swim command, run as real processes on 127.0.0.1 (real clock)."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

import trio_swim
from trio_swim import (
    BroadcastReceived,
    EventsMissed,
    MemberRemoved,
    MessageReceived,
    MetadataChanged,
    Node,
    Status,
    StatusChanged,
)
from trio_swim.cli import LineSplitter, build_parser, event_json, main, rfc3339, run_config

FAST = ["--heartbeat-ms", "100"]
# Bounds for things that take a few protocol periods; generous for busy machines.
STARTUP_SECONDS = 15
CONVERGE_SECONDS = 15
DETECT_SECONDS = 20
RFC3339_MS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def child_environment(**extra: str) -> dict[str, str]:
    """The test's environment without SWIM_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWIM_")}
    env["PYTHONIOENCODING"] = "utf-8"
    env.update(extra)
    return env


class RunningMember:
    """A ``trio-swim run`` process, with its stdout and stderr lines collected."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.address = ""
        self._changed = trio.Event()

    async def collect(self, stream: trio.abc.ReceiveStream, lines: list[str]) -> None:
        pending = b""
        async for chunk in stream:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            lines.extend(line.decode() for line in complete)
            self._changed.set()
            self._changed = trio.Event()
        if pending:
            lines.append(pending.decode())
        self._changed.set()

    async def wait_for(self, found: Callable[[], Any], within: float, what: str) -> Any:
        """Wait until ``found()`` is truthy and return it."""
        with trio.move_on_after(within):
            while not (result := found()):
                await self._changed.wait()
            return result
        raise AssertionError(f"no {what} within {within} s; stderr: {self.stderr}")

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout]

    async def wait_for_event(self, within: float, **fields: Any) -> dict[str, Any]:
        def match() -> dict[str, Any] | None:
            for event in self.events():
                if all(event.get(k) == v for k, v in fields.items()):
                    return event
            return None

        result: dict[str, Any] = await self.wait_for(match, within, f"event {fields}")
        return result

    async def send_line(self, data: bytes) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(data)


@asynccontextmanager
async def spawned(
    args: list[str], *, env: dict[str, str] | None = None, stdin: int = subprocess.PIPE
) -> AsyncIterator[RunningMember]:
    """Start ``python -m trio_swim ARGS``, collecting its output; kill it on the way out."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_swim", *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_environment() if env is None else env,
    )
    member = RunningMember(process)
    try:
        async with trio.open_nursery() as nursery:
            assert process.stdout is not None
            assert process.stderr is not None
            nursery.start_soon(member.collect, process.stdout, member.stdout)
            nursery.start_soon(member.collect, process.stderr, member.stderr)
            yield member
            nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await process.wait()


@asynccontextmanager
async def running_member(
    *args: str, env: dict[str, str] | None = None, json_output: bool = True
) -> AsyncIterator[RunningMember]:
    """``trio-swim run --listen 127.0.0.1:0 --heartbeat-ms 100 [--json] ARGS``, once bound."""
    argv = ["run", "--listen", "127.0.0.1:0", *FAST, *(["--json"] if json_output else []), *args]
    async with spawned(argv, env=env) as member:

        def listening() -> str | None:
            for line in member.stderr:
                if found := re.search(r"listening on (\S+)", line):
                    return found.group(1)
            return None

        member.address = await member.wait_for(listening, STARTUP_SECONDS, "address")
        yield member


async def stop(member: RunningMember, signum: signal.Signals) -> int:
    """Send ``signum`` and wait for the process to end; its exit status."""
    member.process.send_signal(signum)
    with trio.fail_after(STARTUP_SECONDS):
        return await member.process.wait()


async def see_each_other_alive(members: list[RunningMember]) -> None:
    for observer in members:
        for subject in members:
            if subject is not observer:
                await observer.wait_for_event(
                    CONVERGE_SECONDS, event="status", node=subject.address, status="alive"
                )


# --------------------------------------------------------- whole processes


async def test_members_join_see_each_other_and_broadcast_stdin_lines() -> None:
    env = child_environment(SWIM_MAX_BROADCAST_BYTES="64")
    async with (
        running_member(env=env) as a,
        running_member("--join", a.address, env=env) as b,
        running_member("--join", a.address, env=env) as c,
    ):
        await see_each_other_alive([a, b, c])
        first = next(e for e in b.events() if e.get("node") == a.address)
        assert first["previous"] is None
        assert isinstance(first["incarnation"], int)
        assert first["incarnation"] > 0

        await a.send_line(b"x" * 65 + b"\n")
        await a.wait_for(
            lambda: any("65 bytes not broadcast" in line for line in a.stderr),
            STARTUP_SECONDS,
            "complaint about the long line",
        )
        await a.send_line("hello, cluster ✓\n".encode() + b"\xff\xfe\n")
        for other in (b, c):
            text = await other.wait_for_event(CONVERGE_SECONDS, event="broadcast", origin=a.address)
            assert {k: v for k, v in text.items() if k not in ("time", "member")} == {
                "event": "broadcast",
                "origin": a.address,
                "payload": "hello, cluster ✓",
            }
            binary = await other.wait_for_event(
                CONVERGE_SECONDS, event="broadcast", payload_b64="//4="
            )
            assert binary["origin"] == a.address
        assert not any(e["event"] == "broadcast" for e in a.events())
        assert all(e["event"] == "status" for e in a.events())
        for member in (a, b, c):
            assert not any("Traceback" in line for line in member.stderr)
            for event in member.events():
                assert event["member"] == member.address
                assert re.fullmatch(RFC3339_MS, event["time"])
                assert list(event)[:3] == ["time", "member", "event"]


async def test_sigkill_is_reported_dead_and_sigterm_left() -> None:
    # No retries of the dead: it is removed one period after it is declared.
    env = child_environment(SWIM_DEAD_RETRY_LIMIT="0")
    async with (
        running_member(env=env) as a,
        running_member("--join", a.address, env=env) as b,
        running_member("--join", a.address, env=env) as c,
    ):
        await see_each_other_alive([a, b, c])

        c.process.kill()
        for observer in (a, b):
            dead = await observer.wait_for_event(
                DETECT_SECONDS, event="status", node=c.address, status="dead"
            )
            assert dead["previous"] in ("alive", "suspect")
            removed = await observer.wait_for_event(DETECT_SECONDS, event="removed", node=c.address)
            assert removed["status"] == "dead"

        assert await stop(b, signal.SIGTERM) == 0
        left = await a.wait_for_event(DETECT_SECONDS, event="status", node=b.address, status="left")
        assert left["previous"] == "alive"
        assert any("received SIGTERM" in line for line in b.stderr)
        assert b.stderr[-1].endswith(" left")
        for line in b.stderr:
            assert re.fullmatch(rf"{RFC3339_MS} (DEBUG|INFO|WARNING|ERROR) \S.*", line), line
        assert re.fullmatch(
            rf"{RFC3339_MS} INFO listening on {re.escape(b.address)} .*", b.stderr[0]
        )

        assert await stop(a, signal.SIGINT) == 0
        assert not any("Traceback" in line for line in a.stderr + b.stderr)


async def test_human_output_is_one_readable_line_per_event() -> None:
    async with (
        running_member() as a,
        running_member("--join", a.address, json_output=False) as b,
    ):
        line = await b.wait_for(lambda: b.stdout, CONVERGE_SECONDS, "a line of output")
        assert re.fullmatch(
            rf"\d\d:\d\d:\d\d\.\d{{3}}  {re.escape(a.address)}  new → alive", line[0]
        )
        await a.send_line(b"hi there\n")
        await b.wait_for(
            lambda: any(x.endswith(f"  {a.address}  broadcast 'hi there'") for x in b.stdout),
            CONVERGE_SECONDS,
            "the broadcast line",
        )
        assert await stop(b, signal.SIGTERM) == 0
        assert not any(re.search(r"listening|left", x) for x in b.stdout)


async def test_flags_win_over_environment_variables() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    env = child_environment(
        SWIM_LISTEN_IP="127.0.0.1",
        SWIM_LISTEN_PORT=str(free_port),
        SWIM_CLUSTER_NAME="from-env",
    )
    argv = ["run", "--cluster", "from-flag"]
    async with spawned(argv, env=env, stdin=subprocess.DEVNULL) as member:
        line = await member.wait_for(
            lambda: [x for x in member.stderr if "listening on" in x],
            STARTUP_SECONDS,
            "the listening line",
        )
        assert line[0].endswith(f"listening on 127.0.0.1:{free_port} (cluster 'from-flag')")
        assert await stop(member, signal.SIGTERM) == 0


async def run_to_completion(
    args: list[str], env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    with trio.fail_after(60):
        result = await trio.run_process(
            [sys.executable, "-m", "trio_swim", *args],
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=child_environment() if env is None else env,
        )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def test_address_in_use_is_one_line_and_status_2() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        status, out, err = await run_to_completion(["run", "--listen", f"127.0.0.1:{port}"])
    assert status == 2
    assert out == ""
    assert err.startswith(f"trio-swim run: error: address 127.0.0.1:{port} is already in use")
    assert err.count("\n") == 1


async def test_bad_environment_is_one_line_and_status_2() -> None:
    env = child_environment(SWIM_LISTEN_PORT="70000")
    status, out, err = await run_to_completion(["run"], env)
    assert (status, out) == (2, "")
    assert err == "trio-swim run: error: SWIM_LISTEN_PORT='70000': must be 0..65535\n"


async def test_unknown_subcommand_through_the_module_is_one_line_and_status_2() -> None:
    status, out, err = await run_to_completion(["frobnicate"])
    assert (status, out) == (2, "")
    assert err.count("\n") == 1
    assert err.startswith("trio-swim: error: argument COMMAND: invalid choice: 'frobnicate'")


async def test_demo_runs_detects_the_kill_and_exits_by_itself() -> None:
    start = trio.current_time()
    status, out, err = await run_to_completion(["demo", "--size", "3"])
    assert status == 0, err
    assert trio.current_time() - start < 30
    assert "\x1b" not in out, "not a terminal: no escape sequences"
    assert "every member sees all 3 alive" in out
    victim = re.search(r"killed (m\d) \(127\.0\.0\.1:\d+\) without a leave", out)
    assert victim is not None
    for survivor in {"m1", "m2", "m3"} - {victim.group(1)}:
        assert re.search(rf"{survivor} sees {victim.group(1)} DEAD \(\+\d+\.\d\d s\)", out)
        assert re.search(rf"{survivor} received 'hello from m1'", out) or survivor == "m1"
    assert f"{victim.group(1)} is DEAD at every other member" in out
    assert "the broadcast reached" in out
    # The last started is the one killed; the two others leave gracefully,
    # the last started first, and the one staying sees it LEFT.
    assert victim.group(1) == "m3"
    assert re.search(r"m2 left: m1 sees it LEFT \(\+\d+\.\d\d s\)", out)
    assert re.search(r"\nm1 :\d+ +self +left +dead\nm2 :\d+ +\(left the cluster\)\n", out)
    assert "m1 leaves last" in out
    assert err == ""


# ---------------------------------------------------------- in this process


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["bogus"], "trio-swim: error: argument COMMAND: invalid choice: 'bogus'"),
        ([], "trio-swim: error: the following arguments are required: COMMAND"),
        (
            ["run", "--join", "127.0.0.1:abc"],
            "trio-swim run: error: argument --join: '127.0.0.1:abc': port 'abc' is not a number",
        ),
        (
            ["run", "--join", "127.0.0.1:0"],
            "trio-swim run: error: argument --join: '127.0.0.1:0': port 0 cannot be joined",
        ),
        (
            ["run", "--listen", "localhost:9999"],
            "trio-swim run: error: argument --listen: 'localhost:9999': "
            "the host must be an IP address",
        ),
        (
            ["run", "--heartbeat-ms", "fast"],
            "trio-swim run: error: argument --heartbeat-ms: 'fast' is not a whole number",
        ),
        (["demo", "--size", "2"], "trio-swim demo: error: argument --size: 2: must be 3..16"),
        (["run", "--colour"], "trio-swim: error: unrecognized arguments: --colour"),
        (
            ["run", "--listen", "::1:9107"],
            "trio-swim run: error: argument --listen: '::1:9107': "
            "an IPv6 address goes in brackets: [::1]:9107 (port 9107) or [::1:9107]:PORT",
        ),
        (
            ["run", "--listen", "::1"],
            "trio-swim run: error: argument --listen: '::1': "
            "an IPv6 address goes in brackets: [::1]:PORT",
        ),
        (
            ["run", "--join", "1.2.3.4.5:9100"],
            "trio-swim run: error: argument --join: '1.2.3.4.5:9100': "
            "'1.2.3.4.5' is neither an IP address nor a host name",
        ),
        (
            ["run", "--join", "256.0.0.1:9100"],
            "trio-swim run: error: argument --join: '256.0.0.1:9100': "
            "'256.0.0.1' is neither an IP address nor a host name",
        ),
        (
            ["run", "--join", "db-.example:9100"],
            "trio-swim run: error: argument --join: 'db-.example:9100': "
            "'db-.example' is neither an IP address nor a host name",
        ),
        (
            ["run", "--join", "db..example:9100"],
            "trio-swim run: error: argument --join: 'db..example:9100': "
            "'db..example' is neither an IP address nor a host name",
        ),
        (
            ["run", "--join", "fe80::1:9100"],
            "trio-swim run: error: argument --join: 'fe80::1:9100': "
            "an IPv6 address goes in brackets: [fe80::1]:9100 (port 9100) or [fe80::1:9100]:PORT",
        ),
        (
            ["run", "--join", "1:2:x"],
            "trio-swim run: error: argument --join: '1:2:x': not an address",
        ),
        (
            ["run", "--advertise", "10.0.0.7"],
            "trio-swim run: error: argument --advertise: '10.0.0.7': "
            "give the port too, as 10.0.0.7:9999",
        ),
        (
            ["run", "--advertise", "db.example:9000"],
            "trio-swim run: error: argument --advertise: 'db.example:9000': "
            "the host must be an IP address",
        ),
        (
            ["run", "--advertise", "10.0.0.7:0"],
            "trio-swim run: error: argument --advertise: '10.0.0.7:0': port 0 cannot be reached",
        ),
        (
            ["run", "--http", "[::1:8080"],
            "trio-swim run: error: argument --http: '[::1:8080': missing ']'",
        ),
        (
            ["run", "--log-level", "loud"],
            "trio-swim run: error: argument --log-level: 'loud': "
            "must be one of debug, info, warning, error",
        ),
        (
            ["run", "-v", "--log-level", "info"],
            "trio-swim run: error: argument --log-level: not allowed with argument -v/--verbose",
        ),
        (
            ["members", "--http", "127.0.0.1:0"],
            "trio-swim members: error: argument --http: '127.0.0.1:0': port 0 cannot be reached",
        ),
        (
            ["stats", "--timeout", "0"],
            "trio-swim stats: error: argument --timeout: '0': must be more than 0, at most 3600",
        ),
    ],
)
def test_command_line_mistakes_end_with_one_line(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(error)
    assert captured.err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (
            ["run", "--heartbeat-ms", "0"],
            "trio-swim run: error: --heartbeat-ms=0: must be 2..3600000",
        ),
        (["run", "--cluster", ""], "trio-swim run: error: --cluster='': must be 1..64 bytes"),
        (
            ["run", "--listen", "0.0.0.0:1"],
            "trio-swim run: error: --listen='0.0.0.0': a wildcard needs advertise_address "
            "(SWIM_ADVERTISE_ADDRESS, --advertise): the address other members can reach",
        ),
    ],
)
def test_bad_flag_values_are_named_by_their_flag(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SWIM_HEARTBEAT_MILLIS", raising=False)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err == error + "\n"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--help"], "members"),
        (["run", "--help"], "--strict-env"),
        (["members", "--help"], "--http"),
        (["stats", "--help"], "--timeout"),
        (["demo", "--help"], "--size"),
    ],
)
def test_every_command_has_help(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: trio-swim")
    assert expected in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"trio-swim {trio_swim.__version__}\n"


def test_run_flags_win_over_environment() -> None:
    env = {
        "SWIM_LISTEN_IP": "::1",
        "SWIM_LISTEN_PORT": "4000",
        "SWIM_CLUSTER_NAME": "from-env",
        "SWIM_HEARTBEAT_MILLIS": "500",
        "SWIM_INITIAL_HOSTS": "127.0.0.1:1",
        "SWIM_MULTICAST_ENABLED": "true",
        "SWIM_GOSSIP_FANOUT": "5",
    }
    parser = build_parser()
    flagged = run_config(
        parser.parse_args(
            [
                "run",
                "--listen",
                "127.0.0.1:0",
                "--cluster",
                "from-flag",
                "--heartbeat-ms",
                "100",
                "--join",
                "127.0.0.1:2",
                "--join",
                "localhost:3",
                "--no-multicast",
            ]
        ),
        env,
    )
    assert (flagged.listen_ip, flagged.listen_port) == ("127.0.0.1", 0)
    assert flagged.cluster_name == "from-flag"
    assert flagged.heartbeat_millis == 100
    assert flagged.initial_hosts == ["127.0.0.1:2", "localhost:3"]
    assert flagged.multicast_enabled is False
    assert flagged.gossip_fanout == 5, "settings without a flag still come from the environment"

    plain = run_config(parser.parse_args(["run"]), env)
    assert (plain.listen_ip, plain.listen_port) == ("::1", 4000)
    assert plain.cluster_name == "from-env"
    assert plain.heartbeat_millis == 500
    assert plain.initial_hosts == ["127.0.0.1:1"]
    assert plain.multicast_enabled is True

    turned_on = run_config(parser.parse_args(["run", "--multicast"]), {})
    assert turned_on.multicast_enabled is True
    assert run_config(parser.parse_args(["run"]), {}).multicast_enabled is False


def test_new_run_flags_reach_the_config_and_win_over_the_environment() -> None:
    env = {
        "SWIM_METADATA": "role=env",
        "SWIM_ADVERTISE_ADDRESS": "10.9.9.9:1",
        "SWIM_HTTP_ADDRESS": "127.0.0.1:1",
    }
    parser = build_parser()
    flagged = run_config(
        parser.parse_args(
            [
                "run",
                "--listen",
                "0.0.0.0:9000",
                "--advertise",
                "10.0.0.7:9000",
                "--metadata",
                "role=db ✓",
                "--http",
                "localhost:8080",
            ]
        ),
        env,
    )
    assert (flagged.listen_ip, flagged.listen_port) == ("0.0.0.0", 9000)
    assert flagged.advertise_address == "10.0.0.7:9000"
    assert flagged.metadata == "role=db ✓".encode()
    assert flagged.http_address == "localhost:8080"

    from_env = run_config(parser.parse_args(["run", "--listen", "0.0.0.0:9000"]), env)
    assert from_env.metadata == b"role=env"
    assert from_env.advertise_address == "10.9.9.9:1"
    assert from_env.http_address == "127.0.0.1:1"

    v6 = run_config(
        parser.parse_args(["run", "--listen", "[::]:0", "--advertise", "[fd00:0::7]:9000"]), {}
    )
    assert v6.advertise_address == "[fd00::7]:9000", "written in canonical form"
    assert v6.listen_ip == "::"


def test_metadata_flag_keeps_the_bytes_of_the_command_line() -> None:
    # How Python hands over an argument that is not UTF-8 (b"a\xffb").
    args = build_parser().parse_args(["run", "--metadata", "a\udcffb"])
    assert run_config(args, {}).metadata == b"a\xffb"


def test_listen_without_a_port_keeps_the_configured_port() -> None:
    parser = build_parser()
    assert run_config(parser.parse_args(["run", "--listen", "127.0.0.2"]), {}).listen_port == 9999
    env = {"SWIM_LISTEN_PORT": "4000", "SWIM_LISTEN_IP": "::1"}
    cfg = run_config(parser.parse_args(["run", "--listen", "127.0.0.2"]), env)
    assert (cfg.listen_ip, cfg.listen_port) == ("127.0.0.2", 4000)
    bracketed = run_config(parser.parse_args(["run", "--listen", "[::1]"]), env)
    assert (bracketed.listen_ip, bracketed.listen_port) == ("::1", 4000)


@pytest.mark.parametrize(
    ("text", "joined"),
    [
        ("localhost", "localhost:9999"),
        ("db-1.example.org.:7946", "db-1.example.org.:7946"),
        ("my_service:1", "my_service:1"),
        ("bücher.example:1", "bücher.example:1"),
        ("[::1]:5", "[::1]:5"),
        ("[0::1]", "[::1]:9999"),
        ("10.0.0.1", "10.0.0.1:9999"),
    ],
)
def test_join_accepts_addresses_and_host_names(text: str, joined: str) -> None:
    args = build_parser().parse_args(["run", "--join", text])
    assert args.join == [joined]


def test_log_level_flags() -> None:
    parser = build_parser()
    assert parser.parse_args(["run"]).log_level is None, "INFO, unless told otherwise"
    assert parser.parse_args(["run", "-v"]).log_level == logging.DEBUG
    assert parser.parse_args(["run", "--log-level", "WARNING"]).log_level == logging.WARNING


def test_unknown_variable_is_a_warning_line_and_an_error_when_strict(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    package = logging.getLogger("trio_swim")
    handlers, level = list(package.handlers), package.level
    for name in [n for n in os.environ if n.startswith("SWIM_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SWIM_HEARBEAT_MILLIS", "100")
    # A bad port stops the command before it binds anything.
    monkeypatch.setenv("SWIM_LISTEN_PORT", "70000")
    typo = "SWIM_HEARBEAT_MILLIS: unknown, did you mean SWIM_HEARTBEAT_MILLIS?"

    assert main(["run"]) == 2
    warning, error = capsys.readouterr().err.splitlines()
    assert re.fullmatch(rf"{RFC3339_MS} WARNING {re.escape(typo)}", warning)
    assert error == "trio-swim run: error: SWIM_LISTEN_PORT='70000': must be 0..65535"

    assert main(["run", "--log-level", "error"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "trio-swim run: error: SWIM_LISTEN_PORT='70000': must be 0..65535"
    ]

    assert main(["run", "--strict-env"]) == 2
    assert capsys.readouterr().err == f"trio-swim run: error: {typo}\n"
    assert (package.handlers, package.level) == (handlers, level), "logging left as it was"


def test_event_json_fields() -> None:
    def record(event: Any) -> dict[str, Any]:
        decoded = json.loads(event_json(event, member="127.0.0.1:1", timestamp=1_800_000_000.5))
        assert decoded.pop("time") == "2027-01-15T08:00:00.500Z"
        assert decoded.pop("member") == "127.0.0.1:1"
        result: dict[str, Any] = decoded
        return result

    node = Node("127.0.0.1:7", Status.SUSPECT, 42)
    assert record(StatusChanged(node, Status.SUSPECT, Status.ALIVE)) == {
        "event": "status",
        "node": "127.0.0.1:7",
        "status": "suspect",
        "previous": "alive",
        "incarnation": 42,
        "metadata": "",
    }
    described = Node("127.0.0.1:8", Status.ALIVE, 3, b"role=db")
    assert record(MetadataChanged(described, b"\xff")) == {
        "event": "metadata",
        "node": "127.0.0.1:8",
        "metadata": "role=db",
        "previous_b64": "/w==",
    }
    assert record(MessageReceived("127.0.0.1:8", b"hi", True)) == {
        "event": "message",
        "origin": "127.0.0.1:8",
        "payload": "hi",
        "reliable": True,
    }
    assert record(BroadcastReceived("[::1]:7", b"\x00\xff")) == {
        "event": "broadcast",
        "origin": "[::1]:7",
        "payload_b64": "AP8=",
    }
    gone = Node("127.0.0.1:7", Status.DEAD, 42)
    assert record(MemberRemoved(gone)) == {
        "event": "removed",
        "node": "127.0.0.1:7",
        "status": "dead",
        "incarnation": 42,
    }
    assert record(EventsMissed(3)) == {"event": "missed", "count": 3}
    assert "\n" not in event_json(BroadcastReceived("127.0.0.1:7", b"two\nlines"), member="x:1")


def test_event_json_time_defaults_to_now() -> None:
    before = time.time()
    stamped = json.loads(event_json(EventsMissed(1), member="[::1]:9"))["time"]
    after = time.time()
    assert rfc3339(before)[:19] <= stamped[:19] <= rfc3339(after)[:19]
    assert re.fullmatch(RFC3339_MS, stamped)


@pytest.mark.parametrize(
    ("timestamp", "text"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (1_796_162_701.1239, "2026-12-01T22:05:01.123Z"),
        (1_796_162_701.9999, "2026-12-01T22:05:01.999Z"),
    ],
)
def test_rfc3339_is_utc_with_milliseconds(timestamp: float, text: str) -> None:
    assert rfc3339(timestamp) == text


@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=10),
    crlf=st.booleans(),
)
def test_line_splitter_keeps_short_lines_and_measures_long_ones(
    lines: list[bytes], cuts: list[int], crlf: bool
) -> None:
    limit = 16
    ending = b"\r\n" if crlf else b"\n"
    stream = b"".join(line + ending for line in lines)
    splitter = LineSplitter(limit)
    got: list[tuple[bytes | None, int]] = []
    start = 0
    for cut in sorted(cuts):
        got += splitter.feed(stream[start:cut])
        start = max(start, cut)
    got += splitter.feed(stream[start:])
    got += splitter.finish()
    expected: list[tuple[bytes | None, int]] = []
    for line in lines:
        # A "\r" before the "\n" belongs to the line end, not to the line.
        raw = line + b"\r" if crlf else line
        text = raw[:-1] if raw.endswith(b"\r") else raw
        expected.append((text if len(text) <= limit else None, len(text)))
    assert got == expected


def test_line_splitter_returns_an_unfinished_last_line() -> None:
    splitter = LineSplitter(8)
    assert splitter.feed(b"one\ntwo") == [(b"one", 3)]
    assert splitter.finish() == [(b"two", 3)]
    assert splitter.finish() == []
    assert splitter.feed(b"x" * 20) == []
    assert splitter.finish() == [(None, 20)]
