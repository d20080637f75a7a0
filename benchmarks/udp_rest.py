"""What an idle cluster of real member processes costs: CPU, memory, datagrams.

``--members`` (20) separate ``python -m trio_swim run`` processes on
127.0.0.1 at the default 250 ms period (stdin a pipe held open, stdout to
``/dev/null``), each joining the first. After ``--warmup`` seconds (20) a
probe pings every member (see below), then for ``--window`` seconds (60) we
measure, per member:

* CPU seconds per minute (user + system, from ``/proc/PID/stat``);
* resident memory (``VmRSS``), and the same over a bare
  ``python -c "import trio, msgspec"`` process measured in the same run;
* datagrams and bytes sent per second. As root the members run in a network
  namespace made for the run (deleted afterwards, also on error), where
  nothing else sends: the namespace's UDP ``OutDatagrams`` (``/proc/net/snmp``)
  and its loopback's transmitted bytes, before and after the window, divided
  by the number of members. Not root: the members run in the host's
  namespace and the datagram figures are skipped (other traffic would count).

Variants (``--variant``, repeatable; both by default), one after the other so
they do not share the CPU, with the same size and window: ``plain`` (no keys)
and ``keyed`` (``--key-file`` with a fresh random 32-byte key). Ratios
keyed / plain are of figures measured in the same run. Until sealing is wired
into the members, keyed figures mean nothing, so the probe also sends each
member a *plaintext* ``Ping`` built from the protocol's own structs: a keyed
member must not answer it, and must answer a sealed one with a sealed
``Ack``. The result of that check is printed and written with the figures.
After the window the probe also asks every member for its state (sealed with
a key), which joins the probe to the cluster, to check that each member held
all the others ALIVE (a note is printed if not).

    python benchmarks/udp_rest.py [--members 20] [--warmup 20] [--window 60]
                                  [--variant plain|keyed]...

Progress goes to stderr, the table to stdout, everything to udp_rest.json
beside this file. One variant takes about warm-up + window + 10 s.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trio_swim.security import Keyring, associated_data, is_sealed
from trio_swim.wire import (
    PROTOCOL_VERSION,
    Ack,
    Codec,
    Message,
    Packet,
    Ping,
    Sync,
    Update,
    WireStatus,
)

from _common import COMMAND_LIMIT, STOP_LIMIT, Namespace, code_state, finite, log, machine

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
CLUSTER = "trio-swim"
MAX_PACKET = 1400
VARIANTS = ("plain", "keyed")
PROBE_WAIT = 1.5
"""Seconds the probe waits for answers to each of its rounds."""
MAX_MEMBERS = 100
IP_UDP_ETH_HEADERS = 14 + 20 + 8
"""What the loopback counts per IPv4 datagram besides its payload."""
BARE = "import sys, trio, msgspec; sys.stdin.read()"


# ------------------------------------------------------------ the probe


def _decode(
    codec: Codec, ring: Keyring | None, ad: bytes, data: bytes
) -> tuple[bool, Packet | None]:
    """(sealed?, packet or None if it does not open or decode)."""
    sealed = is_sealed(data)
    if sealed:
        if ring is None:
            return True, None
        opened = ring.open(data, ad)
        if opened is None:
            return True, None
        data = opened
    packet = codec.decode(data)
    return sealed, packet if isinstance(packet, Packet) else None


Replies = dict[str, list[tuple[bool, Packet]]]
"""Per member asked: each decoded answer, and whether it came sealed."""


class Prober:
    """A fresh UDP socket that talks to the members with the protocol's structs."""

    def __init__(self, targets: list[str], key: bytes | None) -> None:
        self.targets = targets
        self.codec = Codec(CLUSTER, MAX_PACKET)
        self.ring = Keyring([key]) if key is not None else None
        self.ad = associated_data(PROTOCOL_VERSION, CLUSTER)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.05)
        self.address = f"{HOST}:{self.sock.getsockname()[1]}"
        self._to = {t: (t.rsplit(":", 1)[0], int(t.rsplit(":", 1)[1])) for t in targets}

    def round_trip(
        self,
        messages: list[Message],
        *,
        sealed: bool,
        to: list[str],
        extra: dict[str, list[Message]] | None = None,
    ) -> Replies:
        """Send ``messages`` (and ``extra[target]`` first) to each of ``to`` and
        collect the answers for a while."""
        for target in to:
            data = self.codec.encode(self.address, [*(extra or {}).get(target, []), *messages])
            if sealed:
                assert self.ring is not None
                data = self.ring.seal(data, self.ad)
            self.sock.sendto(data, self._to[target])
        replies: Replies = {t: [] for t in to}
        until = time.monotonic() + PROBE_WAIT
        while time.monotonic() < until:
            try:
                data, source = self.sock.recvfrom(65_536)
            except TimeoutError:
                continue
            was_sealed, packet = _decode(self.codec, self.ring, self.ad, data)
            origin = f"{source[0]}:{source[1]}"
            if packet is not None and origin in replies:
                replies[origin].append((was_sealed, packet))
        return replies

    def pings(self) -> dict[str, Any]:
        """A plaintext Ping to everyone, then (with a key) a sealed one."""

        def acked(replies: list[tuple[bool, Packet]], seq: int) -> list[bool]:
            return [s for s, p in replies if any(m == Ack(seq) for m in p.messages)]

        report: dict[str, Any] = {"members": len(self.targets)}
        plain = self.round_trip([Ping(1)], sealed=False, to=self.targets)
        report["plaintext_ping_answered"] = sum(1 for t in self.targets if acked(plain[t], 1))
        if self.ring is not None:
            sealed = self.round_trip([Ping(2)], sealed=True, to=self.targets)
            answers = [acked(sealed[t], 2) for t in self.targets]
            report["sealed_ping_answered"] = sum(1 for a in answers if a)
            report["sealed_ping_answered_sealed"] = sum(1 for a in answers if a and all(a))
        return report

    def membership(self) -> dict[str, Any]:
        """Whom each member holds ALIVE, by a state exchange that joins the probe.

        A member answers a stranger's first state request with an
        introduction only (its own record and a ping); the probe acks the ping
        in its next request, which proves its address and gets the whole
        table. So: ask up to four times, acking every ping heard, until each
        member's answer lists more than itself. The probe is then a member,
        soon a dead one: only ask once nothing is measured any more.
        """
        incarnation = time.time_ns() // 1_000_000
        me = Update(self.address, WireStatus.ALIVE, incarnation, self.address)
        request: list[Message] = [Sync(True, [me])]
        seen: dict[str, set[str]] = {t: set() for t in self.targets}
        sealed = self.ring is not None
        exchange = "sealed" if sealed else "plaintext"
        pending = list(self.targets)
        acks: dict[str, list[Message]] = {}
        for attempt in range(4):
            replies = self.round_trip(request, sealed=sealed, to=pending, extra=acks)
            if sealed and attempt == 0 and not any(replies.values()):
                # Members that cannot open sealed packets: see their state in plaintext.
                sealed, exchange = False, "plaintext (nothing answered the sealed one)"
                replies = self.round_trip(request, sealed=False, to=pending, extra=acks)
            acks = {
                target: [Ack(m.seq) for _, p in answers for m in p.messages if isinstance(m, Ping)]
                for target, answers in replies.items()
            }
            for target, answers in replies.items():
                seen[target] |= {
                    u.address
                    for _, packet in answers
                    for m in packet.messages
                    if isinstance(m, Sync)
                    for u in m.members
                    if u.status is WireStatus.ALIVE and u.address in seen
                }
            pending = [t for t in self.targets if len(seen[t]) < 2]
            if not pending:
                break
        counts = [len(seen[t]) for t in self.targets]
        return {
            "state_exchange": exchange,
            "members_seeing_all_alive": sum(1 for c in counts if c == len(self.targets)),
            "fewest_alive_seen": min(counts, default=0),
        }


def probe(targets: list[str], key: bytes | None, membership: bool) -> dict[str, Any]:
    """The pings, and with ``membership`` the state exchange, of :class:`Prober`.
    Runs inside the members' namespace (see ``--probe``)."""
    prober = Prober(targets, key)
    try:
        report = prober.pings()
        if membership:
            report.update(prober.membership())
        return report
    finally:
        prober.sock.close()


# ------------------------------------------------------------ processes


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now (held together while chosen, then released)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss(pid: int) -> int:
    """Resident set size in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def udp_counters(pid: int) -> dict[str, int]:
    """The Udp line of ``/proc/net/snmp`` in the network namespace of ``pid``."""
    lines = [
        line.split() for line in Path(f"/proc/{pid}/net/snmp").read_text().splitlines()
        if line.startswith("Udp:")
    ]  # fmt: skip
    names, values = lines[0][1:], lines[1][1:]
    return {n: int(v) for n, v in zip(names, values, strict=True)}


def loopback_tx(pid: int) -> tuple[int, int]:
    """(bytes, packets) the loopback of ``pid``'s namespace has transmitted."""
    for line in Path(f"/proc/{pid}/net/dev").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            values = rest.split()
            return int(values[8]), int(values[9])
    raise RuntimeError("no loopback in /proc/net/dev")


def key_file_supported() -> bool:
    """Whether ``trio-swim run`` has ``--key-file``."""
    done = subprocess.run(
        [sys.executable, "-m", "trio_swim", "run", "--help"],
        capture_output=True, text=True, timeout=COMMAND_LIMIT, check=False,
    )  # fmt: skip
    return "--key-file" in done.stdout


@dataclass
class Result:
    """What one variant measured."""

    variant: str
    members: int
    warmup: float
    window: float
    namespace: bool
    seconds: float = math.nan
    cpu_s_per_member_min: float = math.nan
    cpu_share_of_one_core: float = math.nan
    rss_mib_per_member: float = math.nan
    rss_mib_max: float = math.nan
    bare_rss_mib: float = math.nan
    rss_mib_over_bare: float = math.nan
    datagrams_per_member_s: float = math.nan
    payload_bytes_per_member_s: float = math.nan
    wire_bytes_per_member_s: float = math.nan
    udp_counters: dict[str, int] = field(default_factory=dict)
    probe_before: dict[str, Any] = field(default_factory=dict)
    probe_after: dict[str, Any] = field(default_factory=dict)
    sealed: bool | None = None
    """Keyed only: plaintext was refused and sealed pings answered sealed."""
    exited_early: int = 0
    load_average: float = math.nan
    wall_seconds: float = math.nan
    notes: list[str] = field(default_factory=list)


class Run:
    """The member processes of one variant (and the bare interpreter)."""

    def __init__(self, prefix: list[str], ports: list[int], key_file: Path | None, logs: Path):
        self.prefix = prefix
        self.addresses = [f"{HOST}:{p}" for p in ports]
        self.key_file = key_file
        self.logs = logs
        self.members: list[subprocess.Popen[bytes]] = []
        self.bare: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        """No SWIM_* settings from our environment reach the members."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(REPO),
            "PYTHONDONTWRITEBYTECODE": "1",
        }

    def start(self) -> None:
        self.bare = subprocess.Popen(
            [*self.prefix, sys.executable, "-c", BARE],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=self.env(),
        )  # fmt: skip
        first = self.addresses[0]
        for index, address in enumerate(self.addresses):
            argv = [
                *self.prefix, sys.executable, "-m", "trio_swim", "run",
                "--listen", address, "--join", first,
            ]  # fmt: skip
            if self.key_file is not None:
                argv += ["--key-file", str(self.key_file)]
            with open(self.logs / f"member-{index}.log", "wb") as stderr:
                self.members.append(
                    subprocess.Popen(
                        argv,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.DEVNULL,
                        stderr=stderr,
                        env=self.env(),
                    )
                )

    def running(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.members if p.poll() is None]

    def probe(self, key: bytes | None, *, membership: bool) -> dict[str, Any]:
        """Run :func:`probe` where the members are (a child process in the namespace)."""
        argv = [*self.prefix, sys.executable, __file__]
        if membership:
            argv.append("--probe-membership")
        argv += ["--probe", *self.addresses]
        env = self.env()
        if key is not None:
            env["UDP_REST_PROBE_KEY"] = base64.b64encode(key).decode()
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=COMMAND_LIMIT, env=env, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"probe failed: {done.stderr.strip()}")
        report: dict[str, Any] = json.loads(done.stdout)
        return report

    def stop(self) -> None:
        """SIGTERM everyone (members leave), then SIGKILL whoever is still there."""
        everyone = [*self.members, *([self.bare] if self.bare else [])]
        for process in everyone:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_LIMIT
        for process in everyone:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_LIMIT)
            if process.stdin is not None:
                process.stdin.close()


def sleep_with_progress(seconds: float, what: str) -> None:
    """Sleep, printing a line every 20 s."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(left, 20.0))
        if end - time.monotonic() > 0.5:
            log(f"  {what}: {end - time.monotonic():.0f} s to go")


def measure(variant: str, args: argparse.Namespace, index: int) -> Result:
    """Start, warm up, measure and stop one variant."""
    started = time.monotonic()
    use_namespace = args.namespace
    result = Result(variant, args.members, args.warmup, args.window, use_namespace)
    key: bytes | None = os.urandom(32) if variant == "keyed" else None
    with tempfile.TemporaryDirectory(prefix="udp_rest-") as tmp:
        logs = Path(tmp)
        key_file = None
        if key is not None:
            key_file = logs / "key"
            key_file.write_text(base64.b64encode(key).decode() + "\n")
            key_file.chmod(0o600)
        namespace = Namespace(f"udprest-{os.getpid()}-{index}") if use_namespace else None
        try:
            if namespace is not None:
                prefix = namespace.prefix
                ports = [args.base_port + i for i in range(args.members)]
            else:
                prefix, ports = [], free_ports(args.members)
            run = Run(prefix, ports, key_file, logs)
            try:
                run.start()
                log(f"[{variant}] {args.members} members started, warming up {args.warmup:g} s")
                sleep_with_progress(args.warmup, f"[{variant}] warm-up")
                if len(run.running()) < args.members:
                    raise RuntimeError(_exit_report(run))
                result.probe_before = run.probe(key, membership=False)
                log(f"[{variant}] probe: {result.probe_before}")
                pids = [p.pid for p in run.members]
                assert run.bare is not None
                cpu_before = [proc_cpu(pid) for pid in pids]
                if namespace is not None:
                    udp_before = udp_counters(pids[0])
                    lo_before = loopback_tx(pids[0])
                window_start = time.monotonic()
                sleep_with_progress(args.window, f"[{variant}] window")
                cpu_after = [proc_cpu(pid) for pid in pids]
                if namespace is not None:
                    udp_after = udp_counters(pids[0])
                    lo_after = loopback_tx(pids[0])
                seconds = time.monotonic() - window_start
                rss = [proc_rss(pid) for pid in pids]
                bare_rss = proc_rss(run.bare.pid)
                result.load_average = round(os.getloadavg()[0], 2)
                result.exited_early = args.members - len(run.running())
                result.probe_after = run.probe(key, membership=True)
                log(f"[{variant}] probe after the window: {result.probe_after}")
            finally:
                run.stop()
        finally:
            if namespace is not None:
                namespace.delete()

    used = sum(a - b for a, b in zip(cpu_after, cpu_before, strict=True))
    result.seconds = round(seconds, 2)
    result.cpu_s_per_member_min = round(used / args.members / (seconds / 60), 4)
    result.cpu_share_of_one_core = round(used / seconds, 4)
    mib = 1024 * 1024
    result.rss_mib_per_member = round(sum(rss) / len(rss) / mib, 2)
    result.rss_mib_max = round(max(rss) / mib, 2)
    result.bare_rss_mib = round(bare_rss / mib, 2)
    result.rss_mib_over_bare = round((sum(rss) / len(rss) - bare_rss) / mib, 2)
    if namespace is not None:
        delta = {k: udp_after[k] - udp_before[k] for k in udp_after}
        result.udp_counters = delta
        per = args.members * seconds
        result.datagrams_per_member_s = round(delta["OutDatagrams"] / per, 3)
        wire_bytes = lo_after[0] - lo_before[0]
        lo_packets = lo_after[1] - lo_before[1]
        result.wire_bytes_per_member_s = round(wire_bytes / per, 1)
        result.payload_bytes_per_member_s = round(
            (wire_bytes - IP_UDP_ETH_HEADERS * lo_packets) / per, 1
        )
        if lo_packets != delta["OutDatagrams"]:
            result.notes.append(
                f"loopback sent {lo_packets} packets, UDP {delta['OutDatagrams']} datagrams: "
                "payload bytes assume every packet is a UDP datagram"
            )
    if key is not None:
        before = result.probe_before
        result.sealed = (
            before["plaintext_ping_answered"] == 0
            and before.get("sealed_ping_answered_sealed", 0) == args.members
        )
    after = result.probe_after
    if after["members_seeing_all_alive"] != args.members:
        result.notes.append(
            f"after the window only {after['members_seeing_all_alive']} of {args.members} "
            f"members held all ALIVE (fewest: {after['fewest_alive_seen']})"
        )
    result.wall_seconds = round(time.monotonic() - started, 1)
    return result


def _exit_report(run: Run) -> str:
    lines = []
    for index, process in enumerate(run.members):
        if process.poll() is not None:
            tail = (run.logs / f"member-{index}.log").read_text(errors="replace")[-500:]
            lines.append(f"member {index} exited with {process.returncode}: {tail.strip()}")
    return "members exited during warm-up:\n" + "\n".join(lines)


# ------------------------------------------------------------ report


def ratio(a: float, b: float) -> str:
    if math.isnan(a) or math.isnan(b) or b == 0:
        return "-"
    return f"{a / b:.2f}"


def fmt(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def seal_check(result: Result) -> str:
    """One line: what the probe found about sealing."""
    before = result.probe_before
    n = before["members"]
    line = f"plaintext Ping answered by {before['plaintext_ping_answered']}/{n}"
    if "sealed_ping_answered" in before:
        line += (
            f", sealed Ping answered by {before['sealed_ping_answered']}/{n} "
            f"(sealed answers: {before['sealed_ping_answered_sealed']}/{n})"
        )
    return line


COLUMNS = (
    ("CPU s / member / min", "cpu_s_per_member_min", 3),
    ("share of one core", "cpu_share_of_one_core", 3),
    ("RSS MiB / member", "rss_mib_per_member", 1),
    ("bare RSS MiB", "bare_rss_mib", 1),
    ("RSS over bare MiB", "rss_mib_over_bare", 1),
    ("datagrams / member / s", "datagrams_per_member_s", 2),
    ("payload B / member / s", "payload_bytes_per_member_s", 0),
    ("wire B / member / s", "wire_bytes_per_member_s", 0),
)


def table(results: list[Result]) -> str:
    lines = [
        "| variant | n | window s | " + " | ".join(c for c, _, _ in COLUMNS) + " | seal check |",
        "|---|---:|---:|" + "---:|" * len(COLUMNS) + "---|",
    ]
    for r in results:
        values = " | ".join(fmt(getattr(r, name), d) for _, name, d in COLUMNS)
        check = seal_check(r)
        if r.sealed is not None:
            check = ("sealed: " if r.sealed else "NOT SEALED: ") + check
        lines.append(f"| {r.variant} | {r.members} | {r.seconds:.0f} | {values} | {check} |")
    by_name = {r.variant: r for r in results}
    if "plain" in by_name and "keyed" in by_name:
        plain, keyed = by_name["plain"], by_name["keyed"]
        lines += [
            "",
            "| keyed / plain | " + " | ".join(c for c, _, _ in COLUMNS) + " |",
            "|---|" + "---:|" * len(COLUMNS),
            "| ratio | "
            + " | ".join(ratio(getattr(keyed, n), getattr(plain, n)) for _, n, _ in COLUMNS)
            + " |",
        ]
        if not keyed.sealed:
            lines.append(
                "\nkeyed / plain ratios NOT MEANINGFUL: the keyed members answered plaintext "
                "(or did not answer sealed pings): keyed path not wired yet"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds before the window")
    parser.add_argument("--window", type=float, default=60.0, help="seconds measured")
    parser.add_argument(
        "--variant", action="append", choices=VARIANTS, help="repeat for several (default: both)"
    )
    parser.add_argument("--base-port", type=int, default=17_100, help="first port (namespace)")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_suffix(".json"))
    parser.add_argument("--probe", nargs="+", metavar="ADDRESS", help=argparse.SUPPRESS)
    parser.add_argument("--probe-membership", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        raw = os.environ.get("UDP_REST_PROBE_KEY")
        key = base64.b64decode(raw) if raw else None
        print(json.dumps(probe(args.probe, key, args.probe_membership)))
        return 0
    if not 2 <= args.members <= MAX_MEMBERS:
        parser.error(f"--members: must be 2..{MAX_MEMBERS}")
    if not (0 <= args.warmup <= 600 and 1 <= args.window <= 600):
        parser.error("--warmup must be 0..600 and --window 1..600 seconds")
    if not 1024 <= args.base_port <= 65535 - args.members:
        parser.error("--base-port out of range")
    variants = list(dict.fromkeys(args.variant or VARIANTS))
    args.namespace = False
    if not sys.platform.startswith("linux"):
        log("skipped: /proc and network namespaces are Linux features")
        return 0
    if os.geteuid() != 0 or shutil.which("ip") is None:
        log(
            "not root (or no 'ip' command): no network namespace, so the members run on the "
            "host's 127.0.0.1 and the datagram and byte figures are SKIPPED (other traffic "
            "would count); CPU and RSS are still measured"
        )
    else:
        args.namespace = True
    if "keyed" in variants and not key_file_supported():
        log("keyed variant skipped: `trio-swim run --help` has no --key-file")
        variants.remove("keyed")
    results = []
    for index, variant in enumerate(variants):
        result = measure(variant, args, index)
        results.append(result)
        log(
            f"[{variant}] {result.cpu_s_per_member_min:.3f} CPU s/member/min, "
            f"{result.rss_mib_per_member:.1f} MiB/member, "
            f"{fmt(result.datagrams_per_member_s, 2)} datagrams/member/s "
            f"(wall {result.wall_seconds:.0f} s)"
        )
    print(table(results))
    for r in results:
        for note in r.notes:
            print(f"note ({r.variant}): {note}")
    document = {
        "machine": machine(),
        "code": code_state(),
        "namespace": args.namespace,
        "members": args.members,
        "warmup": args.warmup,
        "window": args.window,
        "heartbeat_ms": 250,
        "results": [asdict(r) for r in results],
    }
    args.output.write_text(json.dumps(finite(document), indent=2) + "\n")
    print(f"written {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
