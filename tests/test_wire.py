"""Encoding and strict, bounded decoding of packets."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_swim.wire import (
    PROTOCOL_VERSION,
    Ack,
    Codec,
    DropReason,
    Message,
    Nack,
    Packet,
    Ping,
    PingReq,
    Sync,
    Update,
    UserBroadcast,
    WireStatus,
)

SENDER = "127.0.0.1:7000"
codec = Codec("blue", 1400)

addresses = st.sampled_from(["127.0.0.1:1", "[::1]:2", "10.1.2.3:65535"])
seqs = st.integers(0, 2**62)
update_st = st.builds(Update, addresses, st.sampled_from(list(WireStatus)), seqs, addresses)
message_st: st.SearchStrategy[Message] = st.one_of(
    st.builds(Ping, seqs),
    st.builds(Ack, seqs),
    st.builds(Nack, seqs),
    st.builds(PingReq, seqs, addresses),
    update_st,
    st.builds(UserBroadcast, addresses, seqs, st.binary(max_size=256)),
    st.builds(Sync, st.booleans(), st.lists(update_st, max_size=5)),
)


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
