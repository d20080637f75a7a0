"""Encode and decode speed of one datagram: trio_swim's msgspec codec vs json and pickle.

The datagram is the most common one a member sends: a ping with a full
piggyback, i.e. ``Ping`` plus as many membership ``Update`` records as fit
in ``max_packet_bytes`` (1,400), filled the way the core fills a packet
(``Codec.envelope_size`` and ``Codec.message_size``). The records look like
a real cluster's: ``10.x.y.z:7946`` addresses, wall-clock incarnations,
mostly ALIVE with a few SUSPECT and DEAD.

Each contender encodes that packet to bytes and decodes the bytes back:

* ``msgspec`` is ``trio_swim.wire.Codec``: msgpack arrays, decoded into the
  typed, validated structs (header check included), as a member receives it;
* ``json`` and ``pickle`` (stdlib, highest protocol) get the same content as
  plain Python objects, in two shapes: dicts with field names (the usual
  way), and nested lists shaped like msgspec's arrays; their decoders
  rebuild the objects without checking anything.

Each figure is the best of ``--repeat`` timed runs of a loop sized to about
0.2 s; ``--quick`` takes fewer, shorter runs. The table gives microseconds
per encode and per decode, round trips per second, encoded bytes, and each
contender's round trip relative to msgspec's.

    python benchmarks/codec.py [--quick] [--repeat 7]

Prints the table and writes codec.json beside this file.
"""

from __future__ import annotations

import argparse
import json
import pickle
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from trio_swim.wire import Codec, Message, Packet, Ping, Update, WireStatus

from _common import code_state, log, machine

CLUSTER = "trio-swim"
SENDER = "10.0.3.17:7946"
MAX_PACKET_BYTES = 1400
LOOP_SECONDS = 0.2


def piggybacked_ping(codec: Codec, seed: int) -> list[Message]:
    """A ping and as many membership records as fit, as the core would send."""
    rng = random.Random(seed)
    messages: list[Message] = [Ping(rng.getrandbits(62))]
    budget = MAX_PACKET_BYTES - codec.envelope_size(SENDER) - codec.message_size(messages[0])
    statuses = [WireStatus.ALIVE] * 8 + [WireStatus.SUSPECT, WireStatus.DEAD]
    while True:
        subject = f"10.0.{rng.randrange(256)}.{rng.randrange(1, 255)}:7946"
        source = f"10.0.{rng.randrange(256)}.{rng.randrange(1, 255)}:7946"
        update = Update(
            subject, rng.choice(statuses), 1_795_519_404_877 + rng.randrange(10**6), source
        )
        size = codec.message_size(update)
        if size > budget:
            return messages
        messages.append(update)
        budget -= size


def as_dicts(value: Any) -> Any:
    """``value`` as plain dicts (structs, with a ``type`` key), lists and scalars."""
    if isinstance(value, msgspec.Struct):
        fields = {name: as_dicts(getattr(value, name)) for name in value.__struct_fields__}
        return {"type": type(value).__name__.lower(), **fields}
    if isinstance(value, list):
        return [as_dicts(v) for v in value]
    if isinstance(value, WireStatus):
        return int(value)
    return value


def best_rate(operation: Callable[[], object], repeat: int, loop_seconds: float) -> float:
    """Seconds per call of ``operation``: the best of ``repeat`` timed loops."""
    calls = 1
    while True:
        started = time.perf_counter()
        for _ in range(calls):
            operation()
        took = time.perf_counter() - started
        if took >= loop_seconds / 10:
            break
        calls *= 4
    calls = max(1, int(calls * loop_seconds / took))
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(calls):
            operation()
        best = min(best, (time.perf_counter() - started) / calls)
    return best


def contenders(
    packet: Packet, codec: Codec
) -> dict[str, tuple[Callable[[], bytes], Callable[[bytes], object]]]:
    """Per contender: (encode the packet, decode bytes)."""
    dicts = as_dicts(packet)
    arrays = msgspec.to_builtins(packet)
    encode_json = json.JSONEncoder(separators=(",", ":")).encode
    decode_json = json.JSONDecoder().decode
    highest = pickle.HIGHEST_PROTOCOL
    return {
        "msgspec (trio_swim.wire.Codec)": (
            lambda: codec.encode(packet.sender, packet.messages),
            codec.decode,
        ),
        "json, dicts": (lambda: encode_json(dicts).encode(), lambda b: decode_json(b.decode())),
        "json, arrays": (lambda: encode_json(arrays).encode(), lambda b: decode_json(b.decode())),
        "pickle, dicts": (lambda: pickle.dumps(dicts, highest), pickle.loads),
        "pickle, arrays": (lambda: pickle.dumps(arrays, highest), pickle.loads),
    }


def _applied(function: Callable[[bytes], object], data: bytes) -> Callable[[], object]:
    return lambda: function(data)


def measure(repeat: int, loop_seconds: float, seed: int) -> dict[str, Any]:
    """Time every contender on the same packet; one row each."""
    codec = Codec(CLUSTER, MAX_PACKET_BYTES)
    messages = piggybacked_ping(codec, seed)
    data = codec.encode(SENDER, messages)
    packet = codec.decode(data)
    if not isinstance(packet, Packet):
        raise RuntimeError(f"the packet does not decode: {packet}")
    rows: list[dict[str, Any]] = []
    for name, (encode, decode) in contenders(packet, codec).items():
        encoded = encode()
        if name.startswith("msgspec"):
            expected: object = packet
        else:
            expected = as_dicts(packet) if "dicts" in name else msgspec.to_builtins(packet)
        if decode(encoded) != expected:
            raise RuntimeError(f"{name}: the round trip changed the packet")
        encode_s = best_rate(encode, repeat, loop_seconds)
        decode_s = best_rate(_applied(decode, encoded), repeat, loop_seconds)
        rows.append(
            {
                "contender": name,
                "bytes": len(encoded),
                "encode_us": encode_s * 1e6,
                "decode_us": decode_s * 1e6,
                "round_trips_per_second": 1 / (encode_s + decode_s),
            }
        )
        log(f"{name}: {rows[-1]['round_trips_per_second']:,.0f} round trips/s")
    base = rows[0]["round_trips_per_second"]
    for row in rows:
        row["msgspec_speedup"] = base / row["round_trips_per_second"]
    return {
        "packet": {
            "bytes": len(data),
            "messages": len(packet.messages),
            "updates": len(packet.messages) - 1,
        },
        "rows": rows,
    }


def table(result: dict[str, Any]) -> str:
    """The markdown table of one measurement."""
    packet = result["packet"]
    lines = [
        f"One ping with {packet['updates']} piggybacked updates "
        f"({packet['bytes']} bytes as msgpack)",
        "",
        "| contender | bytes | encode µs | decode µs | round trips / s | msgspec is faster by |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['contender']} | {row['bytes']} | {row['encode_us']:.2f} "
            f"| {row['decode_us']:.2f} | {row['round_trips_per_second']:,.0f} "
            f"| {row['msgspec_speedup']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: measure, print the table, write codec.json."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="3 shorter runs per figure")
    mode.add_argument("--full", action="store_true", help="the default: --repeat runs of 0.2 s")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_suffix(".json"))
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat: must be at least 1")
    repeat, loop_seconds = (3, LOOP_SECONDS / 4) if args.quick else (args.repeat, LOOP_SECONDS)
    result = measure(repeat, loop_seconds, args.seed)
    print(table(result))
    document = {
        "machine": machine(),
        "code": code_state(),
        "python": sys.version.split()[0],
        "msgspec": msgspec.__version__,
        "repeat": repeat,
        "loop_seconds": loop_seconds,
        **result,
    }
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"written {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
