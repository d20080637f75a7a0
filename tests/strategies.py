"""Hypothesis strategies for the wire vocabulary, shared by the test files."""

from __future__ import annotations

from hypothesis import strategies as st

from trio_swim.wire import (
    Ack,
    Announce,
    Message,
    Nack,
    Ping,
    PingReq,
    Sync,
    Update,
    UserBroadcast,
    WireStatus,
)

ADDRESSES = st.sampled_from(["127.0.0.1:1", "[::1]:2", "10.1.2.3:65535"])
SEQS = st.integers(0, 2**62)


def updates(
    addresses: st.SearchStrategy[str], incarnations: st.SearchStrategy[int]
) -> st.SearchStrategy[Update]:
    """Membership updates of any status between ``addresses``."""
    return st.builds(Update, addresses, st.sampled_from(list(WireStatus)), incarnations, addresses)


def messages(
    addresses: st.SearchStrategy[str] = ADDRESSES,
    seqs: st.SearchStrategy[int] = SEQS,
    *,
    update: st.SearchStrategy[Update] | None = None,
    payload_size: int = 256,
    sync_size: int = 5,
    announce: bool = False,
) -> st.SearchStrategy[Message]:
    """Every kind of message, with fields drawn from the given strategies."""
    update = updates(addresses, seqs) if update is None else update
    kinds: list[st.SearchStrategy[Message]] = [
        st.builds(Ping, seqs),
        st.builds(Ack, seqs),
        st.builds(Nack, seqs),
        st.builds(PingReq, seqs, addresses),
        update,
        st.builds(UserBroadcast, addresses, seqs, st.binary(max_size=payload_size)),
        st.builds(Sync, st.booleans(), st.lists(update, max_size=sync_size)),
    ]
    if announce:
        kinds.append(st.just(Announce()))
    return st.one_of(kinds)
