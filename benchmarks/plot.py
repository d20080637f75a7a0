"""Draw the benchmark results as PNG files (needs matplotlib: the ``bench`` extra).

Reads the JSON files the benchmarks wrote beside themselves and draws, into
``benchmarks/plots/``:

* ``detection.png`` (papers.json): the law of the first detection of a crash
  (the period K of the failed probe) per cluster size, beside the SWIM
  paper's e/(e-1) and the exact laws of both probe-target rules;
* ``dissemination.png`` (papers.json): periods until a broadcast reaches
  everyone, against n on a log axis, with the fitted c * ln n;
* ``load.png`` (papers.json): datagrams and bytes per member per period;
* ``lifeguard.png`` (papers.json): false DEAD verdicts and detection times,
  Lifeguard against plain SWIM, per fault level;
* ``codec.png`` (codec.json): round trips per second of each codec;
* ``udp_cluster.png`` (udp_cluster.json, when that file exists): trio_swim
  and memberlist side by side on real sockets.

A missing file or part is skipped with a message. ``--only NAME`` draws one.

    pip install -e '.[bench]'
    python benchmarks/plot.py
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PLOTS = HERE / "plots"
E_OVER_E_MINUS_1 = math.e / (math.e - 1)
INSTALL_HINT = (
    "plot.py needs matplotlib: pip install -e '.[bench]' (in this checkout), "
    "or pip install 'matplotlib>=3.5'"
)
# Colours kept per meaning across the figures.
SWIM_COLOUR = "#c44e52"
LIFEGUARD_COLOUR = "#4c72b0"
MODEL_COLOUR = "#555555"


def load_pyplot() -> Any:
    """matplotlib.pyplot on the file-only backend, or None if not installed."""
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        return None
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None (with a message) if absent or unreadable."""
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        print(f"skipped: no {path.name}", file=sys.stderr)
        return None
    except (OSError, ValueError) as exc:
        print(f"skipped: {path.name} is unreadable ({exc})", file=sys.stderr)
        return None
    if not isinstance(document, dict):
        print(f"skipped: {path.name} holds no JSON object", file=sys.stderr)
        return None
    return document


def number(value: Any) -> float:
    """``value`` as a float; nan for None, text or anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


OUTPUT = [PLOTS]
"""Where :func:`save` writes (``--output``)."""


def save(plt: Any, figure: Any, name: str) -> Path:
    """Write ``figure`` to OUTPUT/NAME.png (without a timestamp) and close it."""
    OUTPUT[0].mkdir(parents=True, exist_ok=True)
    path = OUTPUT[0] / f"{name}.png"
    figure.tight_layout()
    figure.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(figure)
    print(f"written {path}")
    return path


def caption(document: dict[str, Any]) -> str:
    """Where the figures came from, for a figure's foot."""
    code = document.get("code") or {}
    commit = str(code.get("commit") or "")[:10]
    cpus = (document.get("machine") or {}).get("cpus")
    parts = [f"commit {commit}" if commit else "", f"{cpus} CPUs" if cpus else ""]
    mode = document.get("mode")
    if mode:
        parts.append(f"{mode} run")
    return ", ".join(p for p in parts if p)


# ------------------------------------------------------------- papers.json


def plot_detection(plt: Any, papers: dict[str, Any]) -> bool:
    """The law of K per size, and its mean per size, beside the models."""
    rows = [r for r in papers.get("clusters", []) if isinstance(r.get("detection"), dict)]
    if not rows:
        print("skipped detection: papers.json has no detection rows", file=sys.stderr)
        return False
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    ks = list(range(1, 9))
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        d = row["detection"]
        total = max(1, int(d.get("crashes", 0)))
        counts = list(d.get("k_counts", []))[: len(ks)]
        shares = [c / total for c in counts] + [0.0] * (len(ks) - len(counts))
        offsets = [k - 0.4 + width * (i + 0.5) for k in ks]
        left.bar(offsets, shares, width=width, label=f"n = {row['members']} ({total} crashes)")
    model = rows[-1]["detection"].get("p_k_model_random", [])[: len(ks)]
    left.plot(ks[: len(model)], model, "k_", markersize=18, mew=2, label="random target (model)")
    left.axvline(E_OVER_E_MINUS_1, color=MODEL_COLOUR, linestyle="--", linewidth=1)
    left.text(E_OVER_E_MINUS_1 + 0.08, 0.55, "e/(e-1) = 1.58", color=MODEL_COLOUR)
    left.set_xlabel("K: protocol period (after the crash) of the first failed probe")
    left.set_ylabel("share of crashes")
    left.set_xticks(ks)
    left.set_title("First detection of a crash")
    left.legend(fontsize=8)

    sizes = [row["members"] for row in rows]
    means = [number(row["detection"].get("k_mean")) for row in rows]
    errors = [2 * number(row["detection"].get("k_stderr")) for row in rows]
    right.errorbar(sizes, means, yerr=errors, fmt="o", capsize=4, label="measured (±2 s.e.)")
    right.plot(
        sizes,
        [number(r["detection"].get("k_model_round_robin")) for r in rows],
        "s--",
        color=MODEL_COLOUR,
        fillstyle="none",
        label="shuffled round robin (exact)",
    )
    right.plot(
        sizes,
        [number(r["detection"].get("k_model_random")) for r in rows],
        "^:",
        color=MODEL_COLOUR,
        fillstyle="none",
        label="random target (exact)",
    )
    right.axhline(E_OVER_E_MINUS_1, color="black", linewidth=1, label="SWIM paper: e/(e-1)")
    right.set_xscale("log", base=2)
    right.set_xticks(sizes, [str(s) for s in sizes])
    right.set_ylim(1.3, 1.9)
    right.set_xlabel("members")
    right.set_ylabel("mean K (periods)")
    right.set_title("Mean first detection vs cluster size")
    right.legend(fontsize=8)
    figure.text(0.99, 0.01, caption(papers), ha="right", fontsize=7, color=MODEL_COLOUR)
    save(plt, figure, "detection")
    return True


def plot_dissemination(plt: Any, papers: dict[str, Any]) -> bool:
    """Periods until everyone has a broadcast, against n, with c * ln n."""
    rows = [r for r in papers.get("clusters", []) if isinstance(r.get("dissemination"), dict)]
    if not rows:
        print("skipped dissemination: papers.json has no dissemination rows", file=sys.stderr)
        return False
    sizes = [r["members"] for r in rows]
    everyone = [number(r["dissemination"].get("all_mean")) for r in rows]
    worst = [number(r["dissemination"].get("all_max")) for r in rows]
    half = [number(r["dissemination"].get("half_mean")) for r in rows]
    points = [(math.log(n), y) for n, y in zip(sizes, everyone, strict=True) if not math.isnan(y)]
    c = sum(x * y for x, y in points) / sum(x * x for x, _ in points) if points else math.nan
    figure, axes = plt.subplots(figsize=(6.5, 4.2))
    axes.plot(sizes, everyone, "o-", label="everyone has it (mean)")
    axes.plot(sizes, worst, "v", color="C0", fillstyle="none", label="everyone has it (slowest)")
    axes.plot(sizes, half, "o-", color="C1", label="half have it (mean)")
    if not math.isnan(c):
        grid = [
            2 ** (k / 4)
            for k in range(int(4 * math.log2(min(sizes))), int(4 * math.log2(max(sizes))) + 1)
        ]
        axes.plot(
            grid, [c * math.log(n) for n in grid], "--", color=MODEL_COLOUR, label=f"{c:.2f} · ln n"
        )
    axes.set_xscale("log", base=2)
    axes.set_xticks(sizes, [str(s) for s in sizes])
    axes.set_ylim(bottom=0)
    axes.set_xlabel("members (log scale)")
    axes.set_ylabel("protocol periods after the broadcast")
    axes.set_title("Dissemination of a broadcast (plain SWIM, piggyback only)")
    axes.legend(fontsize=8)
    figure.text(0.99, 0.01, caption(papers), ha="right", fontsize=7, color=MODEL_COLOUR)
    save(plt, figure, "dissemination")
    return True


def news_bytes(row: dict[str, Any], phase: str, part: str, count: str) -> float:
    """Bytes each member sent per event (broadcast, crash) of ``phase``, beyond
    what it sends at rest; nan if the row lacks a figure."""
    busy, rest = row.get(phase), row.get("rest")
    events = number((row.get(part) or {}).get(count))
    if not isinstance(busy, dict) or not isinstance(rest, dict) or not events > 0:
        return math.nan
    extra = number(busy.get("bytes_per_member_period")) - number(
        rest.get("bytes_per_member_period")
    )
    return extra * number(busy.get("periods")) / events


def retransmit_limit(members: int, mult: int = 4) -> int:
    """How often each member sends each piece of news: mult x ceil(log10(n + 1))."""
    return mult * max(1, math.ceil(math.log10(members + 1)))


def plot_load(plt: Any, papers: dict[str, Any]) -> bool:
    """Per member: datagrams and bytes per period, and bytes per piece of news."""
    rows = [r for r in papers.get("clusters", []) if isinstance(r.get("rest"), dict)]
    if not rows:
        print("skipped load: papers.json has no load rows", file=sys.stderr)
        return False
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(14, 4.2))
    phases = (
        ("rest", "at rest"),
        ("broadcasting", "broadcasts spreading"),
        ("detecting", "crashes detected (n/128 down at a time)"),
    )
    for key, label in phases:
        chosen = [r for r in rows if isinstance(r.get(key), dict)]
        if not chosen:
            continue
        sizes = [r["members"] for r in chosen]
        left.plot(
            sizes,
            [number(r[key].get("datagrams_per_member_period")) for r in chosen],
            "o-",
            label=label,
        )
        if key != "detecting":  # its crash rate grows with n: see the right panel
            middle.plot(
                sizes,
                [number(r[key].get("bytes_per_member_period")) for r in chosen],
                "o-",
                label=label,
            )
    sizes = [r["members"] for r in rows]
    broadcast = [news_bytes(r, "broadcasting", "dissemination", "broadcasts") for r in rows]
    crash = [news_bytes(r, "detecting", "detection", "crashes") for r in rows]
    right.plot(sizes, broadcast, "o-", color="C1", label="per broadcast (64-byte payload)")
    right.plot(sizes, crash, "o-", color="C2", label="per crash (suspicion, restart)")
    known = [(n, b) for n, b in zip(sizes, broadcast, strict=True) if not math.isnan(b)]
    if known:
        # Each member sends each broadcast retransmit-limit times: the cost of
        # one send, from the smallest cluster, times the limit at each size.
        once = known[0][1] / retransmit_limit(known[0][0])
        right.plot(
            sizes,
            [once * retransmit_limit(n) for n in sizes],
            "--",
            color=MODEL_COLOUR,
            label=f"{once:.0f} B x retransmit limit 4·⌈log10(n+1)⌉",
        )
    for axes in (left, middle, right):
        axes.set_xscale("log", base=2)
        axes.set_xticks(sizes, [str(s) for s in sizes])
        axes.set_ylim(bottom=0)
        axes.set_xlabel("members (log scale)")
        axes.legend(fontsize=7)
    left.set_ylabel("datagrams sent per member per period")
    middle.set_ylabel("bytes sent per member per period")
    right.set_ylabel("bytes each member sent, beyond the load at rest")
    left.set_title("Load per member: datagrams")
    middle.set_title("Load per member: bytes")
    right.set_title("Cost of one piece of news, per member")
    figure.text(0.99, 0.01, caption(papers), ha="right", fontsize=7, color=MODEL_COLOUR)
    save(plt, figure, "load")
    return True


def plot_lifeguard(plt: Any, papers: dict[str, Any]) -> bool:
    """False DEAD verdicts and detection times per fault level, both variants."""
    part = papers.get("lifeguard")
    runs = part.get("runs", []) if isinstance(part, dict) else []
    if not runs:
        print("skipped lifeguard: papers.json has no lifeguard runs", file=sys.stderr)
        return False
    levels = list(dict.fromkeys(r["level"] for r in runs))
    by_key = {(r["level"], r["variant"]): r for r in runs}
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    positions = list(range(len(levels)))
    for shift, variant, colour in (
        (-0.2, "swim", SWIM_COLOUR),
        (0.2, "lifeguard", LIFEGUARD_COLOUR),
    ):
        counts = [number(by_key.get((lv, variant), {}).get("false_dead_healthy")) for lv in levels]
        bars = left.bar(
            [p + shift for p in positions],
            [0 if math.isnan(c) else c for c in counts],
            width=0.4,
            color=colour,
            label=variant,
        )
        for bar, count in zip(bars, counts, strict=True):
            if not math.isnan(count):
                left.annotate(
                    f"{count:.0f}",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
        first = [number(by_key.get((lv, variant), {}).get("first_dead_p50")) for lv in levels]
        everywhere = [
            number(by_key.get((lv, variant), {}).get("all_dead_not_slow_p50")) for lv in levels
        ]
        right.plot(
            [p + shift / 4 for p in positions],
            first,
            "o",
            color=colour,
            fillstyle="none",
            label=f"{variant}: first DEAD (median)",
        )
        right.plot(
            [p + shift / 4 for p in positions],
            everywhere,
            "s",
            color=colour,
            label=f"{variant}: DEAD at every member not slow (median)",
        )
    members = part.get("members", "?") if isinstance(part, dict) else "?"
    left.set_xticks(positions, levels)
    left.set_xlabel(f"fault level ({members} members; slow-k: k members with a slow receive path)")
    left.set_ylabel("false DEAD events about healthy members")
    left.set_title("False positives: Lifeguard vs plain SWIM")
    left.legend(fontsize=8)
    right.set_xticks(positions, levels)
    right.set_ylim(0, right.get_ylim()[1] * 1.1)
    right.set_xlabel("fault level")
    right.set_ylabel("seconds from a real crash")
    right.set_title("Detection of real crashes")
    right.legend(fontsize=7)
    figure.text(0.99, 0.01, caption(papers), ha="right", fontsize=7, color=MODEL_COLOUR)
    save(plt, figure, "lifeguard")
    return True


# ------------------------------------------------------------- other files


def plot_codec(plt: Any, codec: dict[str, Any]) -> bool:
    """Round trips per second per codec."""
    rows = [r for r in codec.get("rows", []) if isinstance(r, dict) and "contender" in r]
    if not rows:
        print("skipped codec: codec.json has no rows", file=sys.stderr)
        return False
    names = [str(r["contender"]) for r in rows]
    rates = [number(r.get("round_trips_per_second")) for r in rows]
    figure, axes = plt.subplots(figsize=(7, 3.6))
    bars = axes.barh(
        names[::-1],
        rates[::-1],
        color=["C0" if n.startswith("msgspec") else "C7" for n in names[::-1]],
    )
    for bar, row in zip(bars, rows[::-1], strict=True):
        label = f"{number(row.get('round_trips_per_second')):,.0f}/s, {row.get('bytes', '?')} B"
        axes.annotate(
            label,
            (bar.get_width(), bar.get_y() + bar.get_height() / 2),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    packet = codec.get("packet", {})
    axes.set_xlabel("encode + decode round trips per second (one core)")
    axes.set_title(f"One ping with {packet.get('updates', '?')} piggybacked updates")
    axes.set_xlim(0, max((r for r in rates if not math.isnan(r)), default=1) * 1.35)
    figure.text(0.99, 0.01, caption(codec), ha="right", fontsize=7, color=MODEL_COLOUR)
    save(plt, figure, "codec")
    return True


UDP_FIGURES = (
    ("false_dead", "false DEAD events"),
    ("detect_all", "kill → DEAD at all (s)"),
    ("cpu_s_per_member_min", "CPU s / member / min"),
    ("udp_datagrams_per_member_s", "UDP datagrams / member / s"),
    ("rss_mib_per_member", "RSS MiB / member"),
)


def plot_udp_cluster(plt: Any, document: dict[str, Any]) -> bool:
    """trio_swim and memberlist side by side per loss level, one panel per figure."""
    # Rows measured with TCP lossy too are another experiment: left out.
    levels = [
        lv for lv in document.get("levels", []) if isinstance(lv, dict) and not lv.get("tcp_loss")
    ]
    implementations = list(
        dict.fromkeys(str(lv.get("implementation")) for lv in levels if lv.get("implementation"))
    )
    losses = sorted(
        {number(lv.get("loss")) for lv in levels if not math.isnan(number(lv.get("loss")))}
    )
    figures = [
        (key, label)
        for key, label in UDP_FIGURES
        if any(not math.isnan(number(lv.get(key))) for lv in levels)
    ]
    if not implementations or not losses or not figures:
        print(
            "skipped udp_cluster: no per-implementation figures in udp_cluster.json",
            file=sys.stderr,
        )
        return False
    by_key = {(str(lv.get("implementation")), number(lv.get("loss"))): lv for lv in levels}
    figure, axes_row = plt.subplots(
        1, len(figures), figsize=(3.2 * len(figures), 3.8), squeeze=False
    )
    width = 0.8 / len(implementations)
    positions = list(range(len(losses)))
    for axes, (key, label) in zip(axes_row[0], figures, strict=True):
        for i, implementation in enumerate(implementations):
            values = [number(by_key.get((implementation, loss), {}).get(key)) for loss in losses]
            # Only measured figures get a bar: a missing one is no zero.
            shown = [(p, v) for p, v in zip(positions, values, strict=True) if not math.isnan(v)]
            bars = axes.bar(
                [p - 0.4 + width * (i + 0.5) for p, _ in shown],
                [v for _, v in shown],
                width=width,
                label=implementation,
                color=f"C{i}",
            )
            for bar, (_, value) in zip(bars, shown, strict=True):
                axes.annotate(
                    f"{value:.3g}",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=6,
                )
        top = axes.get_ylim()[1]
        axes.set_ylim(0, max(1.0, top * 1.12))
        axes.set_xticks(positions, [f"{loss:.0%}" for loss in losses])
        axes.set_xlabel("UDP loss")
        axes.set_title(label, fontsize=9)
    axes_row[0][0].legend(fontsize=8)
    members = document.get("members", "?")
    figure.suptitle(f"{members} real processes on 127.0.0.1 (udp_cluster.py)", fontsize=10)
    code = document.get("trio_swim_code")
    if isinstance(code, dict) and code.get("commit"):
        label = f"trio_swim {str(code['commit'])[:10]}"
        figure.text(0.99, 0.01, label, ha="right", fontsize=7, color=MODEL_COLOUR)
    save(plt, figure, "udp_cluster")
    return True


# ------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """Command line: draw every figure whose data exists."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    names = ("detection", "dissemination", "load", "lifeguard", "codec", "udp_cluster")
    parser.add_argument("--only", action="append", choices=names, help="repeat (default all)")
    parser.add_argument("--data", type=Path, default=HERE, help="where the JSON files are")
    parser.add_argument("--output", type=Path, default=PLOTS, help="where the PNG files go")
    args = parser.parse_args(argv)
    OUTPUT[0] = args.output
    plt = load_pyplot()
    if plt is None:
        print(INSTALL_HINT, file=sys.stderr)
        return 1
    chosen = set(args.only or names)
    drawers: list[tuple[str, str, Callable[[Any, dict[str, Any]], bool]]] = [
        ("detection", "papers.json", plot_detection),
        ("dissemination", "papers.json", plot_dissemination),
        ("load", "papers.json", plot_load),
        ("lifeguard", "papers.json", plot_lifeguard),
        ("codec", "codec.json", plot_codec),
        ("udp_cluster", "udp_cluster.json", plot_udp_cluster),
    ]
    cache: dict[str, dict[str, Any] | None] = {}
    drawn = 0
    for name, source, draw in drawers:
        if name not in chosen:
            continue
        if source not in cache:
            cache[source] = read_json(args.data / source)
        document = cache[source]
        if document is not None and draw(plt, document):
            drawn += 1
    print(f"{drawn} figures drawn into {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
