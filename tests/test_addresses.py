"""The fast canonical-address check agrees with the parse it stands for."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from trio_swim.addresses import (
    AddressError,
    format_address,
    is_canonical_ip_address,
    is_ip_literal,
    split_address,
)


def by_parsing(text: str) -> bool:
    try:
        host, port = split_address(text)
    except AddressError:
        return False
    return is_ip_literal(host) and format_address(host, port) == text and port > 0


octets = st.one_of(st.integers(0, 300).map(str), st.sampled_from(["00", "01", "007", "-1", ""]))
ports = st.one_of(st.integers(0, 70_000).map(str), st.sampled_from(["00", "080", "", "1e3"]))
ipv4ish = st.builds(
    lambda a, b, c, d, p, sep: f"{a}.{b}.{c}.{d}{sep}{p}",
    octets,
    octets,
    octets,
    octets,
    ports,
    st.sampled_from([":", ":", " :", "::"]),
)
ipv6ish = st.builds(
    lambda ip, p: f"[{ip}]:{p}", st.ip_addresses(v=6).map(str) | st.text(max_size=8), ports
)


@settings(max_examples=1000)
@given(st.one_of(ipv4ish, ipv6ish, st.text(max_size=30)))
def test_fast_check_matches_the_parse(text: str) -> None:
    assert is_canonical_ip_address(text) == by_parsing(text)
