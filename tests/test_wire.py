"""Encoding and strict, bounded decoding of packets."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_swim.wire import (
    PROTOCOL_VERSION,
    Codec,
    DropReason,
    Message,
    Packet,
    Ping,
    UserBroadcast,
)

from strategies import messages

SENDER = "127.0.0.1:7000"
codec = Codec("blue", 1400)

message_st = messages()


@given(st.lists(message_st, max_size=8))
def test_round_trip(messages: list[Message]) -> None:
    data = codec.encode(SENDER, messages)
    assert codec.decode(data) == Packet(PROTOCOL_VERSION, "blue", SENDER, messages)


@given(st.lists(message_st, max_size=6))
def test_message_sizes_add_up(messages: list[Message]) -> None:
    data = codec.encode(SENDER, messages)
    assert len(data) <= codec.envelope_size(SENDER) + sum(map(codec.message_size, messages))


@settings(max_examples=500)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(data: bytes) -> None:
    result = codec.decode(data)
    assert isinstance(result, Packet | DropReason)


@settings(max_examples=500)
@given(st.lists(message_st, min_size=1, max_size=4), st.data())
def test_corrupted_packets_never_raise(messages: list[Message], data: st.DataObject) -> None:
    raw = bytearray(codec.encode(SENDER, messages))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    assert isinstance(codec.decode(bytes(raw[:cut])), Packet | DropReason)


def test_oversized_foreign_and_future_packets_are_refused() -> None:
    big = codec.encode(SENDER, [UserBroadcast(SENDER, 1, b"x" * 1400)])
    assert codec.decode(big) is DropReason.OVERSIZED
    other = Codec("red", 1400).encode(SENDER, [Ping(1)])
    assert codec.decode(other) is DropReason.FOREIGN_CLUSTER
    future = msgspec.msgpack.encode([PROTOCOL_VERSION + 1, "blue", SENDER, [[1, 5]]])
    assert codec.decode(future) is DropReason.VERSION
    assert codec.decode(b"") is DropReason.MALFORMED


def test_out_of_range_fields_are_malformed() -> None:
    def raw(*message: object) -> bytes:
        return msgspec.msgpack.encode([PROTOCOL_VERSION, "blue", SENDER, [list(message)]])

    assert isinstance(codec.decode(raw(1, 5)), Packet)
    assert codec.decode(raw(1, -5)) is DropReason.MALFORMED
    assert codec.decode(raw(5, "a:1", 9, 1, "b:1")) is DropReason.MALFORMED  # no status 9
    assert codec.decode(raw(99, 1)) is DropReason.MALFORMED  # unknown tag
    assert codec.decode(raw(3, 1, "x" * 100)) is DropReason.MALFORMED  # address too long


# ------------------------------------------------------------ hostile input
# What an outsider who knows the protocol can put in a datagram: deep nesting
# anywhere, length headers that promise gigabytes, and any msgpack value in
# any field. None of it may raise; all of it is dropped as malformed.

HEADER = msgspec.msgpack.encode(PROTOCOL_VERSION) + msgspec.msgpack.encode("blue")


def nested(depth: int) -> bytes:
    """``depth`` one-element arrays around a nil (fixarray, then array16 headers)."""
    return b"\x91" * depth + b"\xc0"


def test_the_one_datagram_attack_is_dropped() -> None:
    # An int, any string, any sender, then ~1,300 nested arrays: it used to
    # raise RecursionError from the header decoder and kill the member.
    attack = b"\x94" + msgspec.msgpack.encode(7) + b"\xa1x\xa91.2.3.4:5" + nested(1300)
    assert len(attack) < 1400
    assert codec.decode(attack) is DropReason.MALFORMED
    same_cluster = b"\x94" + HEADER + b"\xa91.2.3.4:5" + nested(1300)
    assert codec.decode(same_cluster) is DropReason.MALFORMED


TYPED_PLACES = [
    # (prefix, suffix) around a value where the schema wants something else.
    (b"\x94" + HEADER, b"\x90"),  # the sender
    (b"\x94" + HEADER + b"\xa91.2.3.4:5\x91", b""),  # a message
    (b"\x94" + HEADER + b"\xa91.2.3.4:5\x91\x92\x01", b""),  # a ping's seq
    (b"\x94" + HEADER + b"\xa91.2.3.4:5\x91\x93\x07\xc3\x91", b""),  # a Sync member
    (b"\x94" + HEADER + b"\xa91.2.3.4:5\x91\x94\x06\xa3a:1\x01", b""),  # broadcast payload
]
# Trailing fields are skipped unread (room for later protocol versions), so a
# shallow value there is accepted; a deep one makes the skip itself fail.
TRAILING_PLACES = [
    (b"\x95" + HEADER + b"\xa91.2.3.4:5\x90", b""),  # after the packet's fields
    (b"\x94" + HEADER + b"\xa91.2.3.4:5\x91\x93\x01\x05", b""),  # after a ping's seq
]


@pytest.mark.parametrize(("prefix", "suffix"), TYPED_PLACES)
@pytest.mark.parametrize("depth", [1, 100, 1000, 1300])
def test_nesting_in_a_typed_field_is_malformed(prefix: bytes, suffix: bytes, depth: int) -> None:
    assert codec.decode((prefix + nested(depth) + suffix)[:1400]) is DropReason.MALFORMED


@pytest.mark.parametrize(("prefix", "suffix"), TRAILING_PLACES)
@pytest.mark.parametrize("depth", [1, 100, 1000, 1300])
def test_nesting_in_a_trailing_field_never_raises(prefix: bytes, suffix: bytes, depth: int) -> None:
    result = codec.decode((prefix + nested(depth) + suffix)[:1400])
    assert isinstance(result, Packet | DropReason)


NESTING_PLACES = TYPED_PLACES + TRAILING_PLACES


LENGTH_HEADERS = [
    b"\xdd\xff\xff\xff\xff",  # array32 of 2**32-1 items
    b"\xdf\xff\xff\xff\xff",  # map32
    b"\xdb\xff\xff\xff\xff",  # str32
    b"\xc6\xff\xff\xff\xff",  # bin32
    b"\xc9\xff\xff\xff\xff\x01",  # ext32
    b"\xdc\xff\xff",  # array16
]


@pytest.mark.parametrize("length", LENGTH_HEADERS)
@pytest.mark.parametrize(("prefix", "suffix"), NESTING_PLACES)
def test_huge_length_headers_are_malformed(prefix: bytes, suffix: bytes, length: bytes) -> None:
    assert codec.decode(prefix + length + suffix) is DropReason.MALFORMED


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=80)
    | st.binary(max_size=80)
    | st.builds(msgspec.msgpack.Ext, st.integers(-128, 127), st.binary(max_size=8)),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=400)
@given(st.lists(message_st, min_size=1, max_size=3), st.data())
def test_any_msgpack_value_in_any_field_never_raises(
    messages: list[Message], data: st.DataObject
) -> None:
    # The packet as plain lists, then one field (anywhere, at any depth of
    # the structure) replaced by an arbitrary msgpack value.
    tree: list[object] = msgspec.msgpack.decode(codec.encode(SENDER, messages))
    path: list[list[object]] = [tree]
    node: object = tree
    while isinstance(node, list) and node and data.draw(st.booleans()):
        path.append(node)
        node = node[data.draw(st.integers(0, len(node) - 1))]
    container = path[-1]
    container[data.draw(st.integers(0, len(container) - 1))] = data.draw(msgpack_values)
    raw = msgspec.msgpack.encode(tree)
    result = codec.decode(raw)
    assert isinstance(result, Packet | DropReason)
    if isinstance(result, Packet):
        # Whatever was accepted is well typed, so handlers can rely on it.
        assert msgspec.msgpack.decode(codec.encode(result.sender, result.messages), type=Packet)
