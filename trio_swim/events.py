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


class MemberRemoved(msgspec.Struct, frozen=True):
    """A DEAD or LEFT member was forgotten (its retries ran out, or it left long ago)."""

    node: Node


class EventsMissed(msgspec.Struct, frozen=True):
    """This subscriber fell behind: ``count`` events were dropped at this point."""

    count: int


MemberEvent = StatusChanged | BroadcastReceived | MemberRemoved
"""What the protocol itself reports (every event but :class:`EventsMissed`)."""

Event = StatusChanged | BroadcastReceived | MemberRemoved | EventsMissed
"""What a subscriber receives."""
