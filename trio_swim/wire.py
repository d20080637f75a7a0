"""The wire vocabulary: msgspec structs, one envelope, strict bounded decoding.

Every datagram is one :class:`Packet`: protocol version, cluster name, the
sender's address and a list of messages. Probe messages (ping, ack, ping-req,
nack) and piggybacked gossip (membership updates, user broadcasts) travel in
the same list, so one datagram can answer a probe and spread news at once.
All structs are ``array_like`` (encoded as msgpack arrays, no field names) and
tagged with small integers.
"""

from __future__ import annotations

import enum
from typing import Annotated, Final

import msgspec

PROTOCOL_VERSION: Final = 1
"""Bumped on incompatible changes; packets of a newer version are dropped."""

Address = Annotated[str, msgspec.Meta(max_length=64)]
Incarnation = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Metadata = Annotated[bytes, msgspec.Meta(max_length=65_535)]

STREAM_MAGIC: Final = b"SW"
"""First bytes of every frame on a TCP stream, before its 4-byte length."""
STREAM_HEADER_BYTES: Final = 6


class WireStatus(enum.IntEnum):
    """Member status as sent on the wire."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


class Ping(msgspec.Struct, tag=1, array_like=True, frozen=True):
    """Are you there? Answered by an :class:`Ack` with the same ``seq``."""

    seq: Seq


class Ack(msgspec.Struct, tag=2, array_like=True, frozen=True):
    """Answer to a :class:`Ping`, or relayed answer to a :class:`PingReq`."""

    seq: Seq


class PingReq(msgspec.Struct, tag=3, array_like=True, frozen=True):
    """Please ping ``target`` for me and relay its ack (with my ``seq``)."""

    seq: Seq
    target: Address


class Nack(msgspec.Struct, tag=4, array_like=True, frozen=True):
    """The target of a :class:`PingReq` did not answer in time (Lifeguard)."""

    seq: Seq


class Update(msgspec.Struct, tag=5, array_like=True, frozen=True):
    """What ``source`` believes of ``address``: status at an incarnation.

    ``metadata`` is what the member says about itself at that incarnation;
    None: not carried (a record without it keeps what the receiver knew).
    A record of a member with no metadata carries None (one byte).
    """

    address: Address
    status: WireStatus
    incarnation: Incarnation
    source: Address
    metadata: Metadata | None = None


class UserBroadcast(msgspec.Struct, tag=6, array_like=True, frozen=True):
    """A user payload, identified by (origin, seq), delivered once per member."""

    origin: Address
    seq: Seq
    payload: bytes


class Sync(msgspec.Struct, tag=7, array_like=True, frozen=True):
    """Part of a full-state exchange; ``want_reply`` asks for the receiver's state."""

    want_reply: bool
    members: list[Update]


class Announce(msgspec.Struct, tag=8, array_like=True, frozen=True):
    """Multicast discovery: the sender is a member and can be joined."""


class UserMessage(msgspec.Struct, tag=9, array_like=True, frozen=True):
    """A user payload for the receiver alone (``Member.send``, ``send_reliable``)."""

    payload: bytes


Message = Ping | Ack | PingReq | Nack | Update | UserBroadcast | Sync | Announce | UserMessage


class Packet(msgspec.Struct, array_like=True, frozen=True):
    """One datagram."""

    version: int
    cluster: str
    sender: Address
    messages: list[Message]


class _Header(msgspec.Struct, array_like=True, frozen=True):
    version: int
    cluster: str


class DropReason(enum.Enum):
    """Why an incoming datagram was dropped."""

    OVERSIZED = "oversized"
    MALFORMED = "malformed"
    VERSION = "version"
    FOREIGN_CLUSTER = "foreign_cluster"
    UNAUTHENTICATED = "unauthenticated"
    """Sealed with no key this member holds, or plaintext where a key is required."""
    SPOOFED = "spoofed"
    """Unsealed, and the sender it claims is not the address it came from."""


def stream_frame(body: bytes) -> bytes:
    """``body`` (an encoded, maybe sealed, packet) framed for a TCP stream."""
    return STREAM_MAGIC + len(body).to_bytes(4, "big") + body


def stream_frame_length(header: bytes) -> int | None:
    """The body length a frame header announces; None if it is not a header."""
    if len(header) != STREAM_HEADER_BYTES or header[:2] != STREAM_MAGIC:
        return None
    return int.from_bytes(header[2:], "big")


class Codec:
    """Encoder and decoder for one cluster, built once and reused.

    :meth:`decode` never raises on remote input: it returns either a
    :class:`Packet` or the :class:`DropReason`.
    """

    def __init__(self, cluster_name: str, max_packet_bytes: int) -> None:
        self.cluster_name = cluster_name
        self.max_packet_bytes = max_packet_bytes
        self._encoder = msgspec.msgpack.Encoder()
        self._header_decoder = msgspec.msgpack.Decoder(_Header)
        self._decoder = msgspec.msgpack.Decoder(Packet)

    def encode(self, sender: str, messages: list[Message]) -> bytes:
        """Encode one packet from this member."""
        return self._encoder.encode(Packet(PROTOCOL_VERSION, self.cluster_name, sender, messages))

    def message_size(self, message: Message) -> int:
        """Encoded size of one message inside a packet's message list."""
        return len(self._encoder.encode(message))

    def envelope_size(self, sender: str) -> int:
        """Bytes a packet takes besides its messages (with room for a long list header)."""
        return len(self.encode(sender, [])) + 2

    def cluster_of(self, data: bytes) -> str | None:
        """The cluster name a datagram claims (for reports of foreign ones), if any."""
        try:
            return self._header_decoder.decode(data).cluster[:64]
        except Exception:
            return None

    def decode(self, data: bytes) -> Packet | DropReason:
        """Decode and check one datagram; see :class:`DropReason` for refusals.

        This is the one place remote bytes meet the decoder, so it is the one
        place that catches whatever decoding raises: ``DecodeError`` and
        ``ValidationError``, ``UnicodeDecodeError`` on bad UTF-8,
        ``RecursionError`` when msgspec skips a deeply nested value (a
        datagram of about a thousand nested arrays is enough), or
        ``MemoryError``. Every such datagram is malformed.
        """
        if len(data) > self.max_packet_bytes:
            return DropReason.OVERSIZED
        try:
            header = self._header_decoder.decode(data)
            if header.version != PROTOCOL_VERSION:
                return DropReason.VERSION
            if header.cluster != self.cluster_name:
                return DropReason.FOREIGN_CLUSTER
            return self._decoder.decode(data)
        except Exception:
            return DropReason.MALFORMED
