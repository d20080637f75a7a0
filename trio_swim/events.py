"""The events a member reports to its subscribers: plain frozen structs."""

from __future__ import annotations

import msgspec

from .membership import Node, Status


class StatusChanged(msgspec.Struct, frozen=True):
    """Another member was discovered or changed status."""

    node: Node
    status: Status
    previous: Status | None
    """None when the member was not known before."""


class BroadcastReceived(msgspec.Struct, frozen=True):
    """A broadcast from another member, delivered once."""

    origin: str
    payload: bytes


class MetadataChanged(msgspec.Struct, frozen=True):
    """Another member announced new metadata (``node.metadata``; ``previous`` was the old)."""

    node: Node
    previous: bytes


class MessageReceived(msgspec.Struct, frozen=True):
    """A message another member sent to this one (``Member.send`` or ``send_reliable``)."""

    origin: str
    """The sender's address."""
    payload: bytes
    reliable: bool
    """True if it came over TCP (``send_reliable``), False for one datagram (``send``)."""


class MemberRemoved(msgspec.Struct, frozen=True):
    """A DEAD or LEFT member was forgotten (its retries ran out, or it left long ago)."""

    node: Node


class EventsMissed(msgspec.Struct, frozen=True):
    """This subscriber fell behind: ``count`` events were dropped at this point."""

    count: int


MemberEvent = StatusChanged | MetadataChanged | BroadcastReceived | MessageReceived | MemberRemoved
"""What the protocol itself reports (every event but :class:`EventsMissed`)."""

Event = (
    StatusChanged
    | MetadataChanged
    | BroadcastReceived
    | MessageReceived
    | MemberRemoved
    | EventsMissed
)
"""What a subscriber receives."""
