"""trio_swim and HashiCorp memberlist side by side: real processes, one harness.

``--members`` (20) separate member processes on 127.0.0.1 in a network
namespace made for each run, for each implementation in turn:

* ``trio_swim``: ``python -m trio_swim run --json --listen 127.0.0.1:PORT
  --heartbeat-ms 250 --join FIRST`` (every other setting at its default);
* ``memberlist``: HashiCorp memberlist 0.2.x (Debian's
  ``golang-github-hashicorp-memberlist-dev``) through the small driver in
  ``peers/memberlist/``, built here with Debian's Go: ``DefaultLANConfig()``
  with ``ProbeInterval`` 250 ms and ``ProbeTimeout`` 100 ms (see below). The
  driver prints the same JSON event lines as ``trio-swim run --json``, so one
  parser reads both.

Per loss level (``--loss``, 0 / 10 / 20% by default) and implementation:

1. start the members one after the other, each once its UDP port is bound
   (``/proc/PID/net/udp``), all joining the first; *convergence* is the time
   from the last member's bind until every member has printed ALIVE for
   every other one as its latest word;
2. wait ``--settle`` seconds (30: both implementations run their first
   periodic full-state exchange within about 30 s of starting, memberlist
   not before 30 s), then turn the loss on: an iptables rule drops
   each incoming UDP datagram with that probability, at every receiver;
   TCP is never touched: memberlist's fallback ping and push-pull use TCP,
   and so do trio_swim's fallback probe and state exchange (since 5bda36c),
   each on the same port number as its UDP socket;
3. for ``--window`` seconds (120) count every DEAD event any member prints
   (nobody was killed: each one is false), the SUSPECT events, and the
   suspicion episodes (per subject, the stretches of time during which at
   least one member held it SUSPECT). Over the same window: CPU seconds of
   every member (``/proc/PID/stat``), resident memory at its end
   (``VmRSS``), and what the namespace sent: datagrams and bytes counted by
   iptables rules on OUTPUT (UDP and TCP separately; nothing else sends in
   the namespace) and the datagrams the loss rule dropped;
4. SIGKILL the last member (no leave) and time, from the kill, its DEAD
   event at every survivor (loss still on); once all have printed it (and
   2 s more), kill the next to last, and so on: ``--kills`` (3) members in
   all, n - 1, n - 2, ... survivors. One kill is one sample of a random
   delay (when the victim is next probed, how fast confirmations come), so
   the median over the kills is reported beside the first kill alone;
5. SIGTERM everyone and delete the namespace (also on error or Ctrl-C).

The 0% level is the cluster at rest: its CPU, RSS, datagram and byte figures
are the "at rest" ones. Event times are taken when the harness reads each
line from a member's stdout, the same way for both implementations.

memberlist settings, and why: ``DefaultLANConfig()`` already has what
trio_swim's defaults copy (3 indirect checks, retransmit multiplier 4,
suspicion multiplier 4, suspicion max-timeout multiplier 6, gossip to 3
members every 200 ms, push-pull every 30 s, awareness multiplier 8, 1400-byte
UDP packets). ``ProbeInterval`` is set to trio_swim's 250 ms period.
``ProbeTimeout`` is set to 100 ms, trio_swim's ack timeout ceiling: the LAN
default of 500 ms is longer than the period, so a failed direct ping would
leave no time for the indirect ones before the probe's deadline
(``--memberlist-probe-timeout-ms 500`` measures that configuration).
Everything else, TCP fallback ping included, stays at its default.

Needs Linux, root, ``ip`` and ``iptables``. When Go or the memberlist sources
are missing, the script installs ``golang-go`` and
``golang-github-hashicorp-memberlist-dev`` (and ``iptables``) with apt-get;
where that is impossible memberlist is skipped with a message and trio_swim
is measured alone. Rows of the existing JSON file that a run does not
measure again (another implementation, loss level or ``--tcp-loss``), of the
same size and window, are kept and marked "(kept)", each with its own date
and commit: ``--implementation trio_swim`` re-measures one side and still
prints the ratios against the other.

    python benchmarks/udp_cluster.py                 # 3 levels x 2, about 17 min
    python benchmarks/udp_cluster.py --quick         # 0 and 20%, 20 s windows, about 3 min

Progress goes to stderr, the tables to stdout, everything to
``udp_cluster.json`` beside this file.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trio

from _common import (
    COMMAND_LIMIT,
    REPO,
    Namespace,
    code_state,
    finite,
    log,
    machine,
    quantile,
    run_command,
    stop_processes,
)

HOST = "127.0.0.1"
HEARTBEAT_MS = 250
IMPLEMENTATIONS = ("trio_swim", "memberlist")
PEER_SOURCE = Path(__file__).resolve().parent / "peers" / "memberlist"
GOPATH = Path("/usr/share/gocode")
"""Where Debian's Go library packages put their sources."""
MEMBERLIST_SOURCE = GOPATH / "src" / "github.com" / "hashicorp" / "memberlist"
MEMBERLIST_PACKAGE = "golang-github-hashicorp-memberlist-dev"
GO_PACKAGES = ("golang-go", MEMBERLIST_PACKAGE)
INSTALL_LIMIT = 900.0
"""Seconds apt-get may take for one install (or update)."""
BUILD_LIMIT = 300.0
"""Seconds ``go build`` of the driver may take."""
BIND_LIMIT = 20.0
"""Seconds a started member gets to bind its UDP port."""
FORM_LIMIT = 60.0
"""Seconds after the last bind for the cluster to converge."""
POLL = 0.005
"""Seconds between two looks at /proc while a member starts."""
KILL_PAUSE = 2.0
"""Seconds between one kill seen everywhere and the next kill."""
MAX_MEMBERS = 100
MAX_EVENTS = 2_000_000
"""Status events kept per run; more are counted and dropped."""
LINE_LIMIT = 65_536
"""Longest stdout line a member may print; longer ones are dropped and counted."""
IP_UDP_HEADERS = 20 + 8
"""What iptables counts per IPv4 datagram besides its payload."""
QUICK = {"loss": [0.0, 0.2], "window": 20.0, "settle": 5.0}


# ------------------------------------------------------------ /proc and iptables


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) the process has used; nan once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss(pid: int) -> float:
    """Resident set size in bytes (nan once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return float(int(line.split()[1]) * 1024)
    except OSError:
        pass
    return math.nan


def bound_udp_ports(pid: int) -> set[int]:
    """Local UDP ports (IPv4) bound in the network namespace of ``pid``."""
    ports: set[int] = set()
    try:
        lines = Path(f"/proc/{pid}/net/udp").read_text().splitlines()[1:]
    except OSError:
        return ports
    for line in lines:
        local = line.split()[1]
        ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def snmp(pid: int) -> dict[str, int]:
    """The Udp counters of ``/proc/net/snmp`` in the namespace of ``pid``."""
    rows = [
        line.split() for line in Path(f"/proc/{pid}/net/snmp").read_text().splitlines()
        if line.startswith("Udp:")
    ]  # fmt: skip
    return {n: int(v) for n, v in zip(rows[0][1:], rows[1][1:], strict=True)}


ACCOUNTING_RULES = {"udp_out": "-A OUTPUT -p udp", "tcp_out": "-A OUTPUT -p tcp"}
"""Rules with no target, there only for their packet and byte counters."""
_COUNTED_RULE = re.compile(r"\[(\d+):(\d+)\] (.*)")


def firewall_counters(prefix: list[str]) -> dict[str, tuple[int, int]]:
    """(packets, bytes) of the accounting rules and of the loss rules, by name."""
    done = subprocess.run(
        [*prefix, "iptables-save", "-c", "-t", "filter"],
        capture_output=True, text=True, timeout=COMMAND_LIMIT, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"iptables-save: {done.stderr.strip()}")
    counters: dict[str, tuple[int, int]] = {}
    for line in done.stdout.splitlines():
        match = _COUNTED_RULE.fullmatch(line.strip())
        if match is None:
            continue
        packets, octets, rule = int(match[1]), int(match[2]), match[3].strip()
        for name, text in ACCOUNTING_RULES.items():
            if rule == text:
                counters[name] = (packets, octets)
        if rule.startswith("-A INPUT") and rule.endswith("-j DROP"):
            kind = "udp_dropped" if "-p udp" in rule else "tcp_dropped"
            old = counters.get(kind, (0, 0))
            counters[kind] = (old[0] + packets, old[1] + octets)
    return counters


# ------------------------------------------------------------ the memberlist driver


@dataclass
class Peer:
    """The memberlist driver as built for this run, or why there is none."""

    binary: Path | None = None
    skipped: str | None = None
    memberlist_version: str = "-"
    go_version: str = "-"


def _have_go_sources() -> bool:
    return shutil.which("go") is not None and (MEMBERLIST_SOURCE / "memberlist.go").is_file()


def apt_install(packages: tuple[str, ...]) -> str | None:
    """Install Debian packages; None on success, else why not."""
    if shutil.which("apt-get") is None:
        return "apt-get is not available"
    if os.geteuid() != 0:
        return "installing with apt-get needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    log(f"installing {' '.join(packages)} with apt-get")
    for attempt in range(2):
        try:
            done = subprocess.run(
                install, capture_output=True, text=True, timeout=INSTALL_LIMIT, env=env,
                check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return f"apt-get install took more than {INSTALL_LIMIT:g} s"
        if done.returncode == 0:
            return None
        if attempt == 0:
            # The package lists may be missing or stale: refresh them once.
            log("apt-get install failed; running apt-get update once")
            try:
                subprocess.run(
                    ["apt-get", "update", "-q"], capture_output=True, timeout=INSTALL_LIMIT,
                    env=env, check=False,
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                return f"apt-get update took more than {INSTALL_LIMIT:g} s"
    tail = done.stderr.strip().splitlines()[-1:] or ["(no message)"]
    return f"apt-get install {' '.join(packages)} failed: {tail[0]}"


def _output(argv: list[str]) -> str:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=COMMAND_LIMIT, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "-"
    return done.stdout.strip() if done.returncode == 0 else "-"


def prepare_peer(work: Path, install: bool) -> Peer:
    """Install Go and memberlist's sources if needed, and build the driver in ``work``."""
    if not _have_go_sources():
        if not install:
            return Peer(skipped="Go or memberlist's sources are missing and --no-install was given")
        reason = apt_install(GO_PACKAGES)
        if reason is not None:
            return Peer(skipped=f"{reason}: memberlist needs {' and '.join(GO_PACKAGES)}")
        if not _have_go_sources():
            return Peer(skipped=f"no memberlist sources under {MEMBERLIST_SOURCE} after apt-get")
    binary = work / "memberlist-peer"
    env = {
        **os.environ,
        # Debian's Go library packages are a GOPATH tree: no modules, no network.
        "GO111MODULE": "off",
        "GOPATH": str(GOPATH),
        "GOFLAGS": "",
        "CGO_ENABLED": "0",
    }
    if not any(env.get(k) for k in ("GOCACHE", "XDG_CACHE_HOME", "HOME")):
        env["GOCACHE"] = str(work / "go-cache")
    log(f"building the memberlist driver from {PEER_SOURCE}")
    try:
        done = subprocess.run(
            ["go", "build", "-o", str(binary), "."], cwd=PEER_SOURCE, capture_output=True,
            text=True, timeout=BUILD_LIMIT, env=env, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return Peer(skipped=f"go build took more than {BUILD_LIMIT:g} s")
    if done.returncode != 0:
        return Peer(skipped=f"go build failed: {done.stderr.strip()}")
    version = _output(["dpkg-query", "-W", "-f=${Version}", MEMBERLIST_PACKAGE])
    return Peer(binary, None, version, _output(["go", "version"]))


# ------------------------------------------------------------ the members


class Cluster:
    """The member processes of one run and the status lines they print."""

    def __init__(self, addresses: list[str], logs: Path) -> None:
        self.addresses = addresses
        self.logs = logs
        self.processes: dict[str, trio.Process] = {}
        self.bound_at: dict[str, float] = {}
        # Latest status each member has printed about each other one.
        self.view: dict[str, dict[str, str]] = {a: {} for a in addresses}
        # (monotonic time, observer, subject, status) of every status line.
        self.events: list[tuple[float, str, str, str]] = []
        self.events_dropped = 0
        self.missed = 0
        """Events the members said they could not print (trio_swim's "missed")."""
        self.bad_lines = 0
        self.converged_at: float | None = None
        self.last_bound: float | None = None
        self.complete_at: dict[str, float] = {}
        """When each member first held all the others ALIVE."""

    def converged(self) -> bool:
        """Every member's latest word about every other one is ALIVE."""
        others = len(self.addresses) - 1
        return all(
            sum(1 for status in self.view[a].values() if status == "alive") == others
            for a in self.addresses
        )

    async def start(
        self,
        nursery: trio.Nursery,
        prefix: list[str],
        argv: list[list[str]],
        env: dict[str, str],
        cwd: Path,
    ) -> None:
        """Start each member once the previous one has bound its port."""
        for index, (address, command) in enumerate(zip(self.addresses, argv, strict=True)):
            port = int(address.rsplit(":", 1)[1])
            stderr = os.open(self.logs / f"member-{index}.log", os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                process = await trio.lowlevel.open_process(
                    [*prefix, *command],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    env=env,
                    # ``python -m`` imports from the working directory first.
                    cwd=cwd,
                )
            finally:
                os.close(stderr)
            self.processes[address] = process
            nursery.start_soon(self._read, address, process)
            with trio.move_on_after(BIND_LIMIT):
                while port not in bound_udp_ports(process.pid):
                    if process.poll() is not None:
                        raise RuntimeError(self.exit_report())
                    await trio.sleep(POLL)
            if port not in bound_udp_ports(process.pid):
                raise RuntimeError(f"member {index} did not bind {address} in {BIND_LIMIT:g} s")
            self.bound_at[address] = time.monotonic()
        self.last_bound = time.monotonic()

    async def _read(self, observer: str, process: trio.Process) -> None:
        assert process.stdout is not None
        pending = b""
        async for chunk in process.stdout:
            now = time.monotonic()
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if len(pending) > LINE_LIMIT:
                self.bad_lines += 1
                pending = b""
            for line in lines:
                self._line(now, observer, line)

    def _line(self, now: float, observer: str, line: bytes) -> None:
        try:
            record = json.loads(line)
            kind = record["event"]
        except (ValueError, TypeError, KeyError):
            self.bad_lines += 1
            return
        if kind == "missed":
            self.missed += int(record.get("count", 0))
            return
        if kind == "removed":
            self.view[observer].pop(str(record.get("node")), None)
            return
        if kind != "status":
            return
        subject, status = str(record.get("node")), str(record.get("status"))
        self.view[observer][subject] = status
        if len(self.events) < MAX_EVENTS:
            self.events.append((now, observer, subject, status))
        else:
            self.events_dropped += 1
        # Before the last member has bound its port nobody can see all the
        # others: no need to wait for ``last_bound`` to be set.
        if self.converged_at is None:
            others = len(self.addresses) - 1
            view = self.view[observer].values()
            if observer not in self.complete_at and sum(s == "alive" for s in view) == others:
                self.complete_at[observer] = now
            if self.converged():
                self.converged_at = now

    def pids(self) -> list[int]:
        """Process ids, in member order."""
        return [self.processes[a].pid for a in self.addresses]

    def exit_report(self) -> str:
        """The log tails of members that exited."""
        lines = []
        for index, address in enumerate(self.addresses):
            process = self.processes.get(address)
            if process is not None and process.poll() is not None:
                tail = (self.logs / f"member-{index}.log").read_text(errors="replace")[-600:]
                lines.append(f"member {index} exited with {process.returncode}: {tail.strip()}")
        return "members exited:\n" + "\n".join(lines)

    def kill(self, address: str) -> None:
        """SIGKILL one member: no leave, it just falls silent."""
        self.processes[address].send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        """SIGTERM everyone (they leave), then SIGKILL whoever is still there."""
        await stop_processes(self.processes.values())


def member_argv(
    implementation: str, address: str, seeds: list[str], peer: Peer, args: argparse.Namespace
) -> list[str]:
    """The command line of one member."""
    if implementation == "trio_swim":
        argv = [
            sys.executable, "-m", "trio_swim", "run", "--json", "--no-multicast",
            "--listen", address, "--heartbeat-ms", str(HEARTBEAT_MS),
        ]  # fmt: skip
        for seed in seeds:
            argv += ["--join", seed]
        return argv
    assert peer.binary is not None
    argv = [
        str(peer.binary), "-listen", address,
        "-probe-interval", f"{HEARTBEAT_MS}ms",
        "-probe-timeout", f"{args.memberlist_probe_timeout_ms}ms",
    ]  # fmt: skip
    for seed in seeds:
        argv += ["-join", seed]
    return argv


def describe(implementation: str, peer: Peer, args: argparse.Namespace) -> str:
    """What one member of ``implementation`` runs, in one line."""
    if implementation == "trio_swim":
        command = member_argv(implementation, "IP:PORT", ["FIRST"], peer, args)
        return "python " + " ".join(command[1:])
    return (
        f"memberlist {peer.memberlist_version} ({peer.go_version}): DefaultLANConfig(), "
        f"ProbeInterval {HEARTBEAT_MS} ms, ProbeTimeout {args.memberlist_probe_timeout_ms} ms"
    )


def member_env(code: Path) -> dict[str, str]:
    """No SWIM_* (or Go) settings from our environment reach the members;
    ``import trio_swim`` finds the package under ``code``."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(code),
        "PYTHONDONTWRITEBYTECODE": "1",
    }


@dataclass
class Code:
    """The trio_swim the members import."""

    path: Path
    commit: str
    description: str


def _git(*argv: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", "-C", str(REPO), *argv], capture_output=True, timeout=COMMAND_LIMIT, check=False
    )


def trio_swim_code(revision: str | None, work: Path) -> Code:
    """The working tree (``revision`` None), or ``trio_swim/`` of a commit exported
    with ``git archive`` into ``work`` (the repository is only read)."""
    if revision is None:
        state = code_state()
        commit = str(state.get("commit", ""))
        dirty = (
            " with uncommitted changes in trio_swim/"
            if state.get("trio_swim_uncommitted_changes")
            else ""
        )
        return Code(REPO, commit, f"working tree at {commit[:12]}{dirty}")
    resolved = _git("rev-parse", "--verify", f"{revision}^{{commit}}")
    if resolved.returncode != 0:
        raise SystemExit(f"--trio-swim-code {revision!r}: not a commit of {REPO}")
    commit = resolved.stdout.decode().strip()
    archive = _git("archive", "--format=tar", commit, "trio_swim")
    if archive.returncode != 0:
        raise SystemExit(f"git archive {commit}: {archive.stderr.decode().strip()}")
    destination = work / "trio_swim-code"
    destination.mkdir()
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(destination, filter="data")
        else:
            tar.extractall(destination)  # older Pythons: our own repository's files
    return Code(destination, commit, f"{commit[:12]} ({revision}, exported with git archive)")


def imported_from(code: Path) -> str:
    """Where a member's ``import trio_swim`` finds the package."""
    done = subprocess.run(
        [sys.executable, "-c", "import trio_swim; print(trio_swim.__file__)"],
        capture_output=True, text=True, timeout=COMMAND_LIMIT, env=member_env(code), cwd=code,
        check=False,
    )  # fmt: skip
    return done.stdout.strip() if done.returncode == 0 else f"import failed: {done.stderr[-300:]}"


# ------------------------------------------------------------ one level


@dataclass
class Level:
    """What one (implementation, loss) run measured."""

    implementation: str
    loss: float
    members: int
    window: float
    tcp_loss: bool = False
    """Incoming TCP segments were dropped at the same rate too (``--tcp-loss``)."""
    settle: float = math.nan
    measured: str = ""
    commit: str = ""
    """The trio_swim commit measured (trio_swim rows)."""
    kept_from_earlier_run: bool = False
    config: str = ""
    """What was run: the member command, or memberlist's version and settings."""
    start_seconds: float = math.nan
    """From the first member's start to the last one's bind."""
    convergence_seconds: float = math.nan
    """From the last member's bind until every member sees all ALIVE."""
    member_convergence_p50: float = math.nan
    """Median over members of the time from the last bind until it first saw all ALIVE."""
    slowest_member: str = ""
    false_dead: int = 0
    """DEAD events about members that were not killed."""
    false_dead_pairs: int = 0
    """Distinct (observer, subject) pairs among them."""
    suspect_events: int = 0
    suspected_pairs: int = 0
    suspicion_episodes: int = 0
    """Per subject, stretches during which some member held it SUSPECT."""
    suspicion_p50_seconds: float = math.nan
    """Median time one member held another SUSPECT (until ALIVE or DEAD)."""
    kills: list[dict[str, Any]] = field(default_factory=list)
    """Per kill: the victim, how many survivors, each one's seconds from the
    kill to its DEAD line, how many never printed it, and the slowest."""
    undetected: int = 0
    """(kill, survivor) pairs with no DEAD line within ``--detect-limit``."""
    detect_p50: float = math.nan
    """Median over every (kill, survivor) of the seconds from the kill to DEAD."""
    detect_all: float = math.nan
    """Median over the kills of the seconds until the last survivor printed DEAD."""
    detect_all_first: float = math.nan
    """The same for the first kill alone (n - 1 survivors)."""
    cpu_s_per_member_min: float = math.nan
    cpu_share_of_one_core: float = math.nan
    rss_mib_per_member: float = math.nan
    rss_mib_max: float = math.nan
    udp_datagrams_per_member_s: float = math.nan
    udp_ip_bytes_per_member_s: float = math.nan
    udp_payload_bytes_per_member_s: float = math.nan
    tcp_segments_per_member_s: float = math.nan
    tcp_ip_bytes_per_member_s: float = math.nan
    udp_loss_measured: float = math.nan
    """Datagrams the loss rule dropped / datagrams sent, over the window."""
    snmp_out_datagrams: int = 0
    missed_events: int = 0
    bad_lines: int = 0
    events_dropped: int = 0
    load_average: float = math.nan
    wall_seconds: float = math.nan
    notes: list[str] = field(default_factory=list)


def episodes(
    events: list[tuple[float, str, str, str]], start: float, end: float
) -> tuple[int, int, list[float]]:
    """(cluster-wide suspicion episodes, distinct suspected pairs, per-pair durations)
    of the suspicions that began in [start, end]."""
    opened: dict[tuple[str, str], float] = {}
    spans: dict[str, list[tuple[float, float]]] = {}
    durations: list[float] = []
    for at, observer, subject, status in sorted(events):
        if at > end:
            break
        pair = (observer, subject)
        if status == "suspect":
            opened.setdefault(pair, at)
            continue
        began = opened.pop(pair, None)
        if began is not None and began >= start:
            spans.setdefault(subject, []).append((began, at))
            durations.append(at - began)
    for (_, subject), began in opened.items():
        if began >= start:
            spans.setdefault(subject, []).append((began, end))
    count = 0
    for intervals in spans.values():
        reach = -math.inf
        for began, ended in sorted(intervals):
            if began > reach:
                count += 1
            reach = max(reach, ended)
    pairs = {(o, s) for at, o, s, status in events if status == "suspect" and start <= at <= end}
    return count, len(pairs), durations


async def sleep_with_progress(seconds: float, what: str) -> None:
    """Sleep, with a progress line every 30 s."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        await trio.sleep(min(left, 30.0))
        if end - time.monotonic() > 1:
            log(f"    {what}: {end - time.monotonic():.0f} s to go")


async def run_level(
    implementation: str, loss: float, args: argparse.Namespace, index: int, peer: Peer, code: Code
) -> Level:
    """One loss level of one implementation, in its own namespace."""
    started = time.monotonic()
    level = Level(implementation, loss, args.members, args.window, args.tcp_loss, args.settle)
    level.measured = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    if implementation == "trio_swim":
        level.commit = code.commit
    addresses = [f"{HOST}:{args.base_port + i}" for i in range(args.members)]
    argv = [
        member_argv(implementation, a, [] if i == 0 else addresses[:1], peer, args)
        for i, a in enumerate(addresses)
    ]
    level.config = describe(implementation, peer, args)
    if implementation == "trio_swim":
        level.config += f" [{code.description}]"
    tag = f"[{implementation} {loss:.0%}]"
    with tempfile.TemporaryDirectory(prefix="udp_cluster-") as tmp:
        namespace = Namespace(f"udpcl-{os.getpid()}-{index}")
        cluster = Cluster(addresses, Path(tmp))
        try:
            for rule in ACCOUNTING_RULES.values():
                run_command(*namespace.prefix, "iptables", *rule.split())
            async with trio.open_nursery() as nursery:
                await cluster.start(
                    nursery, namespace.prefix, argv, member_env(code.path), code.path
                )
                assert cluster.last_bound is not None
                level.start_seconds = round(cluster.last_bound - started, 2)
                with trio.move_on_after(FORM_LIMIT):
                    while cluster.converged_at is None:
                        await trio.sleep(0.01)
                if cluster.converged_at is None:
                    raise RuntimeError(
                        f"{tag} not converged {FORM_LIMIT:g} s after the last bind; "
                        + _view_summary(cluster)
                    )
                level.convergence_seconds = round(
                    max(0.0, cluster.converged_at - cluster.last_bound), 3
                )
                complete = {
                    a: max(0.0, t - cluster.last_bound) for a, t in cluster.complete_at.items()
                }
                level.member_convergence_p50 = round(quantile(list(complete.values()), 0.5), 3)
                level.slowest_member = max(complete, key=complete.__getitem__, default="")
                log(f"{tag} {args.members} members converged {level.convergence_seconds:.2f} s "
                    f"after the last bind; settling {args.settle:g} s")  # fmt: skip
                await trio.sleep(args.settle)

                await trio.to_thread.run_sync(namespace.drop_udp, loss)
                if args.tcp_loss and loss > 0:
                    await trio.to_thread.run_sync(_drop_tcp, namespace, loss)
                pids = cluster.pids()
                counters_before = await trio.to_thread.run_sync(firewall_counters, namespace.prefix)
                snmp_before = snmp(pids[0])
                cpu_before = [proc_cpu(p) for p in pids]
                window_start = time.monotonic()
                await sleep_with_progress(args.window, f"{tag} window")
                cpu_after = [proc_cpu(p) for p in pids]
                window_end = time.monotonic()
                snmp_after = snmp(pids[0])
                counters_after = await trio.to_thread.run_sync(firewall_counters, namespace.prefix)
                rss = [proc_rss(p) for p in pids]
                level.load_average = round(os.getloadavg()[0], 2)
                if any(p.poll() is not None for p in cluster.processes.values()):
                    raise RuntimeError(cluster.exit_report())

                # The last members, one at a time: each is killed once every
                # survivor has printed the previous one DEAD (and a pause).
                killed: list[tuple[str, float, list[str]]] = []
                for victim in reversed(addresses[-args.kills :]):
                    dead = {v for v, _, _ in killed}
                    survivors = [a for a in addresses if a != victim and a not in dead]
                    killed.append((victim, time.monotonic(), survivors))
                    cluster.kill(victim)
                    with trio.move_on_after(args.detect_limit):
                        while not all(cluster.view[s].get(victim) == "dead" for s in survivors):
                            await trio.sleep(0.02)
                    await trio.sleep(KILL_PAUSE)
                detect_end = time.monotonic()
                await cluster.stop()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await cluster.stop()
            namespace.delete()

    seconds = window_end - window_start
    per = args.members * seconds
    used = sum(a - b for a, b in zip(cpu_after, cpu_before, strict=True))
    level.cpu_s_per_member_min = round(used / args.members / (seconds / 60), 4)
    level.cpu_share_of_one_core = round(used / seconds, 4)
    mib = 1024 * 1024
    level.rss_mib_per_member = round(sum(rss) / len(rss) / mib, 2)
    level.rss_mib_max = round(max(rss) / mib, 2)

    def delta(name: str) -> tuple[int, int]:
        after, before = counters_after.get(name, (0, 0)), counters_before.get(name, (0, 0))
        return after[0] - before[0], after[1] - before[1]

    udp_packets, udp_bytes = delta("udp_out")
    tcp_packets, tcp_bytes = delta("tcp_out")
    level.udp_datagrams_per_member_s = round(udp_packets / per, 3)
    level.udp_ip_bytes_per_member_s = round(udp_bytes / per, 1)
    level.udp_payload_bytes_per_member_s = round(
        (udp_bytes - IP_UDP_HEADERS * udp_packets) / per, 1
    )
    level.tcp_segments_per_member_s = round(tcp_packets / per, 3)
    level.tcp_ip_bytes_per_member_s = round(tcp_bytes / per, 1)
    if udp_packets:
        level.udp_loss_measured = round(delta("udp_dropped")[0] / udp_packets, 4)
    level.snmp_out_datagrams = snmp_after["OutDatagrams"] - snmp_before["OutDatagrams"]
    if abs(level.snmp_out_datagrams - udp_packets) > max(10, udp_packets // 100):
        level.notes.append(
            f"iptables counted {udp_packets} UDP datagrams out, /proc/net/snmp "
            f"{level.snmp_out_datagrams}"
        )

    killed_at = {victim: at for victim, at, _ in killed}
    first_dead: dict[str, dict[str, float]] = {victim: {} for victim in killed_at}
    false_pairs: set[tuple[str, str]] = set()
    for at, observer, subject, status in cluster.events:
        if at < window_start or at > detect_end:
            continue
        if subject in killed_at and at >= killed_at[subject]:
            if status == "dead":
                first_dead[subject].setdefault(observer, at - killed_at[subject])
            continue
        if status == "dead":
            level.false_dead += 1
            false_pairs.add((observer, subject))
        elif status == "suspect" and at <= window_end:
            level.suspect_events += 1
    level.false_dead_pairs = len(false_pairs)
    count, pairs, durations = episodes(cluster.events, window_start, window_end)
    level.suspicion_episodes, level.suspected_pairs = count, pairs
    level.suspicion_p50_seconds = round(quantile(durations, 0.5), 3)
    every_detection: list[float] = []
    slowest: list[float] = []
    for victim, _, survivors in killed:
        seen = first_dead[victim]
        detections = [round(seen[s], 3) for s in survivors if s in seen]
        missed = len(survivors) - len(detections)
        everyone = max(detections) if detections and not missed else math.nan
        level.kills.append(
            {
                "victim": victim,
                "survivors": len(survivors),
                "detections": detections,
                "undetected": missed,
                "all_seconds": everyone,
            }
        )
        every_detection += detections
        level.undetected += missed
        if not math.isnan(everyone):
            slowest.append(everyone)
    level.detect_p50 = quantile(every_detection, 0.5)
    level.detect_all = statistics.median(slowest) if slowest else math.nan
    level.detect_all_first = level.kills[0]["all_seconds"] if level.kills else math.nan
    level.missed_events = cluster.missed
    level.bad_lines = cluster.bad_lines
    level.events_dropped = cluster.events_dropped
    if cluster.missed:
        level.notes.append(f"members reported {cluster.missed} events they could not print")
    level.wall_seconds = round(time.monotonic() - started, 1)
    return level


def _drop_tcp(namespace: Namespace, probability: float) -> None:
    run_command(
        *namespace.prefix, "iptables", "-A", "INPUT", "-p", "tcp",
        "-m", "statistic", "--mode", "random", "--probability", f"{probability}",
        "-j", "DROP",
    )  # fmt: skip


def _view_summary(cluster: Cluster) -> str:
    counts = [
        sum(1 for status in cluster.view[a].values() if status == "alive")
        for a in cluster.addresses
    ]
    return f"ALIVE others seen per member: {counts}"


# ------------------------------------------------------------ report


def fmt(value: float, digits: int) -> str:
    """``value`` rounded, or "-" for nan."""
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def ratio(a: float, b: float) -> str:
    """a / b to two places, or "-" where it means nothing."""
    if math.isnan(a) or math.isnan(b) or b == 0:
        return "-"
    return f"{a / b:.2f}"


def count_ratio(a: int, b: int) -> str:
    """A ratio of event counts, which may be 0."""
    if a == b == 0:
        return "0 / 0"
    if b == 0:
        return f"{a} / 0"
    return f"{a} / {b} = {a / b:.2f}"


DETECTION_COLUMNS = (
    ("convergence s", "convergence_seconds", 2),
    ("kill→DEAD p50 s", "detect_p50", 2),
    ("kill→DEAD all s (median of kills)", "detect_all", 2),
    ("kill→DEAD all s (first kill)", "detect_all_first", 2),
)
COST_COLUMNS = (
    ("CPU s / member / min", "cpu_s_per_member_min", 3),
    ("RSS MiB / member", "rss_mib_per_member", 1),
    ("UDP datagrams / member / s", "udp_datagrams_per_member_s", 2),
    ("UDP payload B / member / s", "udp_payload_bytes_per_member_s", 0),
    ("TCP segments / member / s", "tcp_segments_per_member_s", 2),
    ("TCP B / member / s", "tcp_ip_bytes_per_member_s", 0),
)


def _loss_label(level: Level) -> str:
    return f"{level.loss:.0%}" + (" UDP+TCP" if level.tcp_loss and level.loss > 0 else "")


def table(levels: list[Level]) -> str:
    """Detection, then cost, of every level; then trio_swim / memberlist per loss."""
    names = {
        id(lv): lv.implementation + (" (kept)" if lv.kept_from_earlier_run else "") for lv in levels
    }
    lines = [
        "| implementation | loss | window s | false DEAD | pairs | SUSPECT events "
        "| suspicion episodes | suspicion p50 s | "
        + " | ".join(c for c, _, _ in DETECTION_COLUMNS)
        + " | kills | missed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|"
        + "---:|" * len(DETECTION_COLUMNS)
        + "---:|---:|",
    ]
    for lv in levels:
        values = " | ".join(fmt(getattr(lv, n), d) for _, n, d in DETECTION_COLUMNS)
        lines.append(
            f"| {names[id(lv)]} | {_loss_label(lv)} | {lv.window:g} | {lv.false_dead} "
            f"| {lv.false_dead_pairs} | {lv.suspect_events} | {lv.suspicion_episodes} "
            f"| {fmt(lv.suspicion_p50_seconds, 2)} | {values} | {len(lv.kills)} "
            f"| {lv.undetected} |"
        )
    lines += [
        "",
        "| implementation | loss | "
        + " | ".join(c for c, _, _ in COST_COLUMNS)
        + " | loss measured | load avg |",
        "|---|---:|" + "---:|" * len(COST_COLUMNS) + "---:|---:|",
    ]
    for lv in levels:
        values = " | ".join(fmt(getattr(lv, n), d) for _, n, d in COST_COLUMNS)
        lines.append(
            f"| {names[id(lv)]} | {_loss_label(lv)} | {values} "
            f"| {fmt(lv.udp_loss_measured * 100, 1)}% | {fmt(lv.load_average, 2)} |"
        )
    pairs = [
        (a, b)
        for a in levels
        for b in levels
        if a.implementation == "trio_swim" and b.implementation == "memberlist"
        and (a.loss, a.tcp_loss) == (b.loss, b.tcp_loss)
    ]  # fmt: skip
    if pairs:
        columns = DETECTION_COLUMNS + COST_COLUMNS
        lines += [
            "",
            "| trio_swim / memberlist | false DEAD | SUSPECT events | suspicion episodes | "
            + " | ".join(c for c, _, _ in columns)
            + " |",
            "|---|---:|---:|---:|" + "---:|" * len(columns),
        ]
        for a, b in pairs:
            lines.append(
                f"| {_loss_label(a)} loss | {count_ratio(a.false_dead, b.false_dead)} "
                f"| {count_ratio(a.suspect_events, b.suspect_events)} "
                f"| {count_ratio(a.suspicion_episodes, b.suspicion_episodes)} | "
                + " | ".join(ratio(getattr(a, n), getattr(b, n)) for _, n, _ in columns)
                + " |"
            )
    return "\n".join(lines)


def level_from_json(record: dict[str, Any]) -> Level:
    """A Level read back from the JSON (None for nan)."""
    known = {k: v for k, v in record.items() if k in Level.__dataclass_fields__}
    level = Level(**known)
    for name, value in known.items():
        if value is None:
            setattr(level, name, math.nan)
    return level


def kept_levels(path: Path, measured: list[Level], args: argparse.Namespace) -> list[Level]:
    """Rows of the existing JSON that this run did not measure again (another
    implementation, loss level or TCP setting), if of the same size and window."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if (document.get("members"), document.get("window")) != (args.members, args.window):
        return []
    done = {(lv.implementation, lv.loss, lv.tcp_loss) for lv in measured}
    kept = []
    for record in document.get("levels", []):
        level = level_from_json(record)
        if (level.implementation, level.loss, level.tcp_loss) in done:
            continue
        level.kept_from_earlier_run = True
        kept.append(level)
    return kept


def interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is Ctrl-C (or SIGTERM), maybe inside exception groups."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    inner: tuple[BaseException, ...] = getattr(exc, "exceptions", ())
    return bool(inner) and all(interrupted(e) for e in inner)


def unavailable() -> str | None:
    """Why this machine cannot run the benchmark at all, or None."""
    if not sys.platform.startswith("linux"):
        return "network namespaces and /proc are Linux features"
    if os.geteuid() != 0:
        return "creating a network namespace needs root"
    if shutil.which("ip") is None:
        return "the 'ip' command is not installed"
    return None


def main(argv: list[str] | None = None) -> int:
    """Command line: each loss level for each implementation; print, write JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument(
        "--loss", type=float, action="append", help="drop probability; repeat (default 0, 0.1, 0.2)"
    )
    parser.add_argument("--window", type=float, help="seconds counted per level (default 120)")
    parser.add_argument("--settle", type=float, help="seconds after converging (default 30)")
    parser.add_argument(
        "--quick", action="store_true", help="0 and 20%% loss, 20 s windows, 5 s settling"
    )
    parser.add_argument(
        "--kills", type=int, default=3, help="members killed one after the other per level (3)"
    )
    parser.add_argument(
        "--detect-limit", type=float, default=60.0, help="seconds a kill may take to be seen"
    )
    parser.add_argument("--base-port", type=int, default=17_300)
    parser.add_argument(
        "--implementation", action="append", choices=IMPLEMENTATIONS, help="repeat (default both)"
    )
    parser.add_argument(
        "--memberlist-probe-timeout-ms",
        type=int,
        default=100,
        help="memberlist's ProbeTimeout (default 100; DefaultLANConfig has 500)",
    )
    parser.add_argument(
        "--trio-swim-code",
        metavar="REV",
        help="measure trio_swim/ as of this commit (git archive) instead of the working tree",
    )
    parser.add_argument(
        "--tcp-loss", action="store_true", help="drop incoming TCP segments at the same rate too"
    )
    parser.add_argument(
        "--no-install", action="store_true", help="never run apt-get (skip what is missing)"
    )
    parser.add_argument("--output", type=Path, default=Path(__file__).with_suffix(".json"))
    args = parser.parse_args(argv)
    # Started in the background SIGINT may be ignored, and SIGTERM would end
    # the run without deleting its namespace: both become trio's KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    defaults = QUICK if args.quick else {"loss": [0.0, 0.1, 0.2], "window": 120.0, "settle": 30.0}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if not 3 <= args.members <= MAX_MEMBERS:
        parser.error(f"--members: must be 3..{MAX_MEMBERS}")
    if not (1 <= args.window <= 3600 and 0 <= args.settle <= 600 and 1 <= args.detect_limit <= 600):
        parser.error("--window must be 1..3600, --settle 0..600, --detect-limit 1..600 seconds")
    if not all(0 <= p < 1 for p in args.loss):
        parser.error("--loss: a probability in [0, 1)")
    if not 1 <= args.kills <= args.members - 2:
        parser.error("--kills: 1 .. members - 2")
    if not 1024 <= args.base_port <= 65535 - args.members:
        parser.error("--base-port out of range")
    if not 1 <= args.memberlist_probe_timeout_ms <= 10_000:
        parser.error("--memberlist-probe-timeout-ms: 1..10000")
    args.loss = list(dict.fromkeys(args.loss))
    reason = unavailable()
    if reason is not None:
        # Not a failure: ``nox -s bench`` runs every benchmark, root or not.
        log(f"skipped: {reason}")
        return 0
    if shutil.which("iptables") is None and not args.no_install:
        why = apt_install(("iptables",))
        if why is not None:
            log(f"iptables: {why}")
    if shutil.which("iptables") is None:
        log("skipped: the 'iptables' command is not installed (it drops and counts datagrams)")
        return 0
    implementations = list(dict.fromkeys(args.implementation or IMPLEMENTATIONS))

    with tempfile.TemporaryDirectory(prefix="udp_cluster-peer-") as work:
        code = trio_swim_code(args.trio_swim_code, Path(work))
        if "trio_swim" in implementations:
            log(f"trio_swim: {code.description}; members import {imported_from(code.path)}")
        peer = Peer(skipped="not asked for")
        if "memberlist" in implementations:
            peer = prepare_peer(Path(work), install=not args.no_install)
            if peer.skipped is not None:
                log(f"memberlist SKIPPED: {peer.skipped}")
                implementations.remove("memberlist")
            else:
                log(f"memberlist {peer.memberlist_version} ({peer.go_version})")
        if not implementations:
            log("nothing to measure")
            return 1
        levels: list[Level] = []
        index = failures = 0
        for loss in args.loss:
            for implementation in implementations:
                log(f"[{implementation} {loss:.0%}] starting {args.members} members")
                try:
                    level = trio.run(run_level, implementation, loss, args, index, peer, code)
                except BaseException as exc:
                    if interrupted(exc):
                        log("interrupted: nothing written (the namespace and members are gone)")
                        return 130
                    if not isinstance(exc, Exception):
                        raise
                    # One broken level (a member that died, a cluster that did not
                    # form; it may come wrapped in an exception group from the
                    # nursery) should not cost the others: record it and go on.
                    log(f"[{implementation} {loss:.0%}] FAILED: {exc}")
                    level = Level(implementation, loss, args.members, args.window, args.tcp_loss)
                    level.config = describe(implementation, peer, args)
                    level.notes.append(f"failed: {exc}")
                    failures += 1
                index += 1
                levels.append(level)
                log(
                    f"[{implementation} {loss:.0%}] false DEAD {level.false_dead}, "
                    f"SUSPECT {level.suspect_events}, kill seen by all in "
                    f"{fmt(level.detect_all, 2)} s, {level.cpu_s_per_member_min:.3f} CPU "
                    f"s/member/min, {level.udp_datagrams_per_member_s:.2f} datagrams/member/s "
                    f"(wall {level.wall_seconds:.0f} s)"
                )

    kept = kept_levels(args.output, levels, args)
    if kept:
        names = sorted({k.implementation for k in kept})
        log(f"kept {len(kept)} rows of {', '.join(names)} from {args.output}")
    everything = sorted(
        levels + kept,
        key=lambda lv: (lv.tcp_loss, lv.loss, IMPLEMENTATIONS.index(lv.implementation)),
    )
    print(table(everything))
    for lv in everything:
        for note in lv.notes:
            print(f"note ({lv.implementation}, {lv.loss:.0%}): {note}")
    document = {
        "machine": machine(),
        "trio_swim_code": {"commit": code.commit, "description": code.description},
        "quick": args.quick,
        "members": args.members,
        "window": args.window,
        "settle": args.settle,
        "heartbeat_ms": HEARTBEAT_MS,
        "memberlist_skipped": peer.skipped if "memberlist" not in implementations else None,
        "levels": [asdict(lv) for lv in everything],
    }
    args.output.write_text(json.dumps(finite(document), indent=2) + "\n")
    print(f"written {args.output}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
