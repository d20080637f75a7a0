"""The status endpoint on real sockets (127.0.0.1, real clock): its paths, its
metrics text, and the bounds that keep hostile clients from hurting the member."""

from __future__ import annotations

import base64
import hashlib
import re
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, cast

import h11
import msgspec
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from trio_swim import Config, Member, MemberStatistics, Status, open_member
from trio_swim._hub import EventHub, HubStatistics
from trio_swim._status_page import SCRIPT, STYLE
from trio_swim.events import StatusChanged
from trio_swim.membership import Node
from trio_swim.status import (
    HttpStatistics,
    StatusServer,
    members_document,
    metrics_text,
    open_status_server,
)
from trio_swim.testing import wait_converged

from simcluster import converged, wait_until


def fast(**settings: Any) -> Config:
    """A short period, so that real-clock clusters converge within a second."""
    return Config(
        heartbeat_millis=100, probe_timeout_millis=50, gossip_interval_millis=50, **settings
    )


@asynccontextmanager
async def served(size: int = 2, **limits: Any) -> AsyncIterator[tuple[list[Member], StatusServer]]:
    """``size`` converged members on UDP; the first serves its status on a
    port chosen by the system (with ``limits``)."""
    async with AsyncExitStack() as stack:
        server = await open_status_server("127.0.0.1:0", **limits)
        first = await stack.enter_async_context(open_member(fast(listen_port=0)))
        nursery = await stack.enter_async_context(trio.open_nursery())
        nursery.start_soon(server, first)
        members = [first]
        for _ in range(1, size):
            cfg = fast(listen_port=0, initial_hosts=[first.address])
            members.append(await stack.enter_async_context(open_member(cfg)))
        await wait_converged(*members, timeout=10)
        yield members, server
        nursery.cancel_scope.cancel()


class Answer(msgspec.Struct):
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


async def request(address: str, path: str, method: str = "GET") -> Answer:
    """One HTTP/1.1 request with h11 as the client."""
    host, port = address.rsplit(":", 1)
    client = h11.Connection(h11.CLIENT)
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            out = client.send(h11.Request(method=method, target=path, headers=[("Host", address)]))
            await stream.send_all((out or b"") + (client.send(h11.EndOfMessage()) or b""))
            status, headers, body = 0, {}, b""
            while True:
                event = client.next_event()
                if event is h11.NEED_DATA:
                    client.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    headers = {k.decode(): v.decode() for k, v in event.headers}
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    return Answer(status, headers, body)
                else:
                    raise AssertionError(f"unexpected {event!r}")


async def raw_exchange(address: str, data: bytes, *, within: float = 5) -> bytes:
    """Send ``data`` as it is and read until the server closes."""
    host, port = address.rsplit(":", 1)
    with trio.fail_after(within):
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            await stream.send_all(data)
            answer = b""
            while chunk := await stream.receive_some(65536):
                answer += chunk
            return answer


def status_line(answer: bytes) -> bytes:
    return answer.split(b"\r\n", 1)[0]


# ---------------------------------------------------------------- the paths


async def test_members_lists_every_member_with_status_and_incarnation() -> None:
    async with served(3) as (members, server):
        answer = await request(server.address, "/members")
        assert answer.status == 200
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["connection"] == "close"
        doc = answer.json()
        assert doc["address"] == members[0].address
        assert doc["cluster"] == "trio-swim"
        assert doc["local_health"] == members[0].statistics().local_health
        listed = {m["address"]: m for m in doc["members"]}
        assert set(listed) == {m.address for m in members}
        assert [m["address"] for m in doc["members"]] == sorted(listed)
        for member in members:
            entry = listed[member.address]
            assert entry["status"] == "alive"
            assert entry["incarnation"] == member.node.incarnation
            assert ("metadata" in entry) != ("metadata_b64" in entry)
        discovered = {
            e["address"] for e in doc["events"] if e["kind"] == "status" and e["previous"] is None
        }
        assert discovered == {members[1].address, members[2].address}
        assert all(isinstance(e["time"], float) for e in doc["events"])


class TableOnly:
    """Just what ``members_document`` reads of a member, with a table given."""

    def __init__(self, nodes: list[Node]) -> None:
        self.address = nodes[0].address
        self.config = Config(cluster_name="table")
        self._nodes = nodes

    def members(self) -> list[Node]:
        return self._nodes

    def statistics(self) -> MemberStatistics:
        return msgspec.structs.replace(distinct_statistics(), local_health=3)


def test_metadata_is_text_when_it_is_utf8_and_base64_otherwise() -> None:
    nodes = [
        Node("127.0.0.1:2", Status.ALIVE, 1, b"role=web \xe2\x9c\x93"),
        Node("127.0.0.1:1", Status.SUSPECT, 2, b"\xff\xfe binary"),
        Node("127.0.0.1:3", Status.DEAD, 3, b""),
    ]
    doc = members_document(cast(Member, TableOnly(nodes)))
    assert (doc["address"], doc["cluster"], doc["local_health"]) == ("127.0.0.1:2", "table", 3)
    assert doc["members"] == [
        {
            "address": "127.0.0.1:1",
            "status": "suspect",
            "incarnation": 2,
            "metadata_b64": "//4gYmluYXJ5",
        },
        {
            "address": "127.0.0.1:2",
            "status": "alive",
            "incarnation": 1,
            "metadata": "role=web \u2713",
        },
        {"address": "127.0.0.1:3", "status": "dead", "incarnation": 3, "metadata": ""},
    ]
    assert base64.b64decode(doc["members"][0]["metadata_b64"]) == b"\xff\xfe binary"
    # Decoded by a JSON client as it was given.
    assert msgspec.json.decode(msgspec.json.encode(doc)) == doc


async def test_the_event_ring_keeps_the_newest_entries_first() -> None:
    async with served(4, event_history=2) as (members, server):
        events = (await request(server.address, "/members")).json()["events"]
        # Three members were discovered; two entries are kept, the newest first.
        assert len(events) == 2
        assert events[0]["time"] >= events[1]["time"]
        joined_last = members[3].address
        assert events[0]["address"] == joined_last or events[1]["address"] == joined_last


async def test_stats_has_every_field_of_member_statistics() -> None:
    async with served(2) as (members, server):
        doc = (await request(server.address, "/stats")).json()
        assert doc["address"] == members[0].address
        fields = {f.name for f in msgspec.structs.fields(MemberStatistics)}
        assert set(doc["statistics"]) == fields
        assert doc["statistics"]["packets_received"] > 0
        assert doc["statistics"]["probe_timeout"] == pytest.approx(
            members[0].statistics().probe_timeout
        )


async def test_health_answers_200_with_the_address() -> None:
    async with served(1) as (members, server):
        answer = await request(server.address, "/health")
        assert answer.status == 200
        assert answer.json() == {"status": "running", "address": members[0].address}


async def test_head_answers_the_headers_without_a_body() -> None:
    async with served(1) as (_, server):
        get = await request(server.address, "/health")
        head = await request(server.address, "/health", method="HEAD")
        assert head.status == 200
        assert head.body == b""
        assert head.headers["content-length"] == str(len(get.body))


async def test_unknown_paths_are_404_and_queries_are_ignored() -> None:
    async with served(1) as (_, server):
        assert (await request(server.address, "/nothing")).status == 404
        assert (await request(server.address, "/health?verbose=1")).status == 200
        assert server.statistics().not_found == 1


async def test_the_page_is_self_contained_and_allows_only_its_own_script() -> None:
    async with served(1) as (_, server):
        answer = await request(server.address, "/")
        assert answer.status == 200
        assert answer.headers["content-type"].startswith("text/html")
        html = answer.body.decode()
        assert SCRIPT in html
        assert STYLE in html
        assert not re.search(r"(src|href)\s*=", html), "the page must not load anything"
        assert "innerHTML" not in html
        policy = answer.headers["content-security-policy"]
        for text in (SCRIPT, STYLE):
            digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in policy
        assert "default-src 'none'" in policy
        assert "'unsafe-inline'" not in policy


# ---------------------------------------------------------------- metrics

SAMPLE = re.compile(
    r'(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?P<labels>[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*"'
    r'(,[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*")*)\})? (?P<value>\S+)'
)


def check_exposition_grammar(text: str) -> None:
    """Every line is HELP, TYPE or a sample (format 0.0.4), each family's HELP
    and TYPE come once and before its samples, and the text ends in a newline."""
    assert text.endswith("\n")
    described: set[str] = set()
    typed: set[str] = set()
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert name not in described, line
            described.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge"), line
            assert name in described, line
            assert name not in typed, line
            typed.add(name)
        else:
            match = SAMPLE.fullmatch(line)
            assert match, line
            assert match["name"] in typed, line
            float(match["value"])


def families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample_value(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"no sample {name}{labels}")


def distinct_statistics() -> MemberStatistics:
    """Every field a different value, so that each can be found in the text."""
    values: dict[str, Any] = {}
    for index, field in enumerate(msgspec.structs.fields(MemberStatistics)):
        values[field.name] = index + 0.25 if field.type is float else 1000 + index
    return MemberStatistics(**values)


def render(statistics: MemberStatistics, **overrides: Any) -> str:
    settings: dict[str, Any] = {
        "address": "127.0.0.1:7946",
        "cluster_name": "prod",
        "members": [
            Node("127.0.0.1:7946", Status.ALIVE, 1),
            Node("127.0.0.1:7947", Status.ALIVE, 1),
            Node("127.0.0.1:7948", Status.DEAD, 3),
        ],
        "statistics": statistics,
        "hub": HubStatistics(subscribers=3, lagging=1, events_dropped=17),
        "http": HttpStatistics(
            **{f: 500 + i for i, f in enumerate(HttpStatistics.__struct_fields__)}
        ),
        "http_connections_open": 2,
        **overrides,
    }
    return metrics_text(**settings)


def test_every_statistics_field_is_a_metric_with_its_value() -> None:
    statistics = distinct_statistics()
    text = render(statistics)
    check_exposition_grammar(text)
    for field in msgspec.structs.fields(MemberStatistics):
        value = getattr(statistics, field.name)
        if field.name.startswith("dropped_"):
            reason = field.name.removeprefix("dropped_")
            assert sample_value(text, "trio_swim_dropped_total", reason=reason) == value
        elif field.name == "local_health":
            assert sample_value(text, "trio_swim_local_health") == value
        elif field.name == "probe_timeout":
            assert sample_value(text, "trio_swim_probe_timeout_seconds") == value
        elif isinstance(value, float):
            assert sample_value(text, f"trio_swim_{field.name}") == value
        else:
            assert sample_value(text, f"trio_swim_{field.name}_total") == value


def test_metrics_types_and_help_come_from_the_fields() -> None:
    found = families(render(distinct_statistics()))
    assert found["trio_swim_members"].type == "gauge"
    assert found["trio_swim_local_health"].type == "gauge"
    assert found["trio_swim_probe_timeout_seconds"].type == "gauge"
    # The parser names a counter family without its _total suffix.
    assert found["trio_swim_packets_sent"].type == "counter"
    assert found["trio_swim_probes_sent"].type == "counter"
    assert found["trio_swim_probes_sent"].documentation == (
        "Protocol periods that pinged a member (one probe each)."
    )
    assert found["trio_swim_refutations"].documentation.startswith("Times this member raised")
    dropped = found["trio_swim_dropped"]
    assert dropped.type == "counter"
    assert "spoofed: Unsealed datagrams" in dropped.documentation
    assert found["trio_swim_packets_sent"].documentation == "Datagrams sent."


def test_metrics_count_members_by_status_and_the_subscribers() -> None:
    text = render(distinct_statistics())
    assert sample_value(text, "trio_swim_members", status="alive") == 2
    assert sample_value(text, "trio_swim_members", status="dead") == 1
    assert sample_value(text, "trio_swim_members", status="suspect") == 0
    assert sample_value(text, "trio_swim_members", status="left") == 0
    assert sample_value(text, "trio_swim_event_subscribers") == 3
    assert sample_value(text, "trio_swim_event_subscribers_lagging") == 1
    assert sample_value(text, "trio_swim_events_dropped_total") == 17
    assert sample_value(text, "trio_swim_http_connections_open") == 2
    for index, field in enumerate(HttpStatistics.__struct_fields__):
        assert sample_value(text, f"trio_swim_http_{field}_total") == 500 + index


def test_label_values_are_escaped() -> None:
    awkward = 'a"b\\c\nd'
    text = render(distinct_statistics(), cluster_name=awkward)
    check_exposition_grammar(text)
    assert "\n" not in text.split("trio_swim_member_info{", 1)[1].split("}", 1)[0]
    assert (
        sample_value(text, "trio_swim_member_info", address="127.0.0.1:7946", cluster=awkward) == 1
    )


async def test_metrics_of_a_running_member_parse() -> None:
    async with served(3) as (members, server):
        await wait_until(lambda: members[0].statistics().probes_sent > 0, within=5)
        answer = await request(server.address, "/metrics")
        assert answer.status == 200
        assert answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = answer.body.decode()
        check_exposition_grammar(text)
        assert sample_value(text, "trio_swim_members", status="alive") == 3
        assert sample_value(text, "trio_swim_packets_received_total") > 0
        assert sample_value(text, "trio_swim_probes_sent_total") > 0
        assert (
            sample_value(
                text, "trio_swim_member_info", address=members[0].address, cluster="trio-swim"
            )
            == 1
        )
        # The endpoint's own event subscription, keeping up.
        assert sample_value(text, "trio_swim_event_subscribers") >= 1
        assert sample_value(text, "trio_swim_event_subscribers_lagging") == 0
        assert sample_value(text, "trio_swim_http_connections_accepted_total") >= 1


async def test_a_subscriber_that_falls_behind_is_counted_as_lagging() -> None:
    async with served(1) as (members, server):
        slow = members[0].events(buffer=1)
        for _ in range(2):
            async with open_member(fast(listen_port=0, initial_hosts=[members[0].address])):
                await wait_until(lambda: len(members[0].healthy_members()) == 2, within=10)
        text = (await request(server.address, "/metrics")).body.decode()
        assert sample_value(text, "trio_swim_event_subscribers_lagging") == 1
        assert sample_value(text, "trio_swim_events_dropped_total") >= 1
        await slow.aclose()
        text = (await request(server.address, "/metrics")).body.decode()
        assert sample_value(text, "trio_swim_event_subscribers_lagging") == 0


def test_the_hub_counts_lagging_subscribers_and_dropped_events() -> None:
    hub = EventHub()
    keeping_up = hub.subscribe(10)
    behind = hub.subscribe(2)
    event = StatusChanged(Node("127.0.0.1:1", Status.ALIVE, 1), Status.ALIVE, None)
    assert hub.statistics() == HubStatistics(subscribers=2, lagging=0, events_dropped=0)
    hub.publish(event)
    hub.publish(event)
    # Full, nothing dropped yet: the next event would be.
    assert hub.statistics() == HubStatistics(subscribers=2, lagging=1, events_dropped=0)
    hub.publish(event)
    hub.publish(event)
    assert hub.statistics() == HubStatistics(subscribers=2, lagging=1, events_dropped=2)
    del keeping_up, behind


# ---------------------------------------------------------------- the bounds


async def still_working(members: list[Member], server: StatusServer) -> None:
    """The member still gossips and still answers."""
    before = members[0].statistics().packets_received
    await wait_until(lambda: members[0].statistics().packets_received > before + 2, within=5)
    assert converged(members)()
    assert (await request(server.address, "/health")).status == 200


async def test_connections_over_the_cap_are_closed_at_once_and_counted() -> None:
    async with served(2, max_connections=2) as (members, server):
        host, port = server.address.rsplit(":", 1)
        idle = [await trio.open_tcp_stream(host, int(port)) for _ in range(2)]
        await wait_until(lambda: server.connections_open == 2, within=5)
        for _ in range(3):
            # Closed without a word, long before the 5 s connection deadline.
            assert await raw_exchange(server.address, b"", within=1) == b""
        await wait_until(lambda: server.statistics().connections_refused == 3, within=5)
        for stream in idle:
            await stream.aclose()
        await wait_until(lambda: server.connections_open == 0, within=5)
        await still_working(members, server)
        stats = server.statistics()
        assert stats.connections_refused == 3
        assert stats.connections_timed_out == 0
        text = (await request(server.address, "/metrics")).body.decode()
        assert sample_value(text, "trio_swim_http_connections_refused_total") == 3


async def test_an_oversized_request_head_is_refused_with_431_and_counted() -> None:
    async with served(2, max_request_bytes=1024) as (members, server):
        head = b"GET /members HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 50_000 + b"\r\n\r\n"
        answer = await raw_exchange(server.address, head)
        assert status_line(answer) == b"HTTP/1.1 431 Request Header Fields Too Large"
        assert b"connection: close" in answer.lower()
        # Just under the limit is fine.
        small = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 900 + b"\r\n\r\n"
        assert status_line(await raw_exchange(server.address, small)) == b"HTTP/1.1 200 OK"
        assert server.statistics().requests_oversized == 1
        await still_working(members, server)


async def test_a_malformed_request_is_refused_with_400_and_counted() -> None:
    async with served(2) as (members, server):
        for garbage in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", b"HELLO\r\n\r\n"):
            answer = await raw_exchange(server.address, garbage)
            assert status_line(answer) == b"HTTP/1.1 400 Bad Request"
        # HTTP/1.1 without a Host header is malformed too.
        answer = await raw_exchange(server.address, b"GET / HTTP/1.1\r\n\r\n")
        assert status_line(answer) == b"HTTP/1.1 400 Bad Request"
        assert server.statistics().requests_malformed == 3
        await still_working(members, server)


async def test_a_client_that_never_finishes_its_request_is_cut_at_the_deadline() -> None:
    async with served(2, connection_timeout=0.5) as (members, server):
        host, port = server.address.rsplit(":", 1)
        start = trio.current_time()
        with trio.fail_after(5):
            stream = await trio.open_tcp_stream(host, int(port))
            async with stream:
                await stream.send_all(b"GET /members HTTP/1.1\r\nHost: x\r\n")
                for _ in range(3):
                    await trio.sleep(0.1)
                    await stream.send_all(b"X-Slow: 1\r\n")
                assert await stream.receive_some(1024) == b""
        took = trio.current_time() - start
        assert 0.5 <= took < 2
        assert server.statistics().connections_timed_out == 1
        assert server.statistics().requests_served == 0
        await still_working(members, server)


async def test_methods_other_than_get_and_head_are_refused_with_405_and_counted() -> None:
    async with served(2) as (members, server):
        for method in ("POST", "PUT", "DELETE", "OPTIONS"):
            answer = await request(server.address, "/members", method=method)
            assert answer.status == 405
            assert answer.headers["allow"] == "GET, HEAD"
        # A body sent with a refused method is not read, and the answer still arrives.
        post = (
            b"POST /members HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n" + b"x" * 200_000
        )
        assert status_line(await raw_exchange(server.address, post)) == (
            b"HTTP/1.1 405 Method Not Allowed"
        )
        assert server.statistics().methods_refused == 5
        assert server.statistics().requests_served == 0
        await still_working(members, server)


# ---------------------------------------------------------------- open_member


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_open_member_serves_the_configured_http_address() -> None:
    port = free_tcp_port()
    async with open_member(fast(listen_port=0, http_address=f"127.0.0.1:{port}")) as member:
        answer = await request(f"127.0.0.1:{port}", "/health")
        assert answer.json()["address"] == member.address
    # Closed with the member.
    with trio.socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        await probe.connect(("127.0.0.1", port))


async def test_no_http_address_no_endpoint() -> None:
    async with open_member(fast(listen_port=0)) as member:
        assert member.config.http_address == ""
        stats = member._hub.statistics()
        assert stats.subscribers == 0  # no event ring subscribed either


async def test_a_taken_http_port_raises_from_open_member() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="already in use"):
            async with open_member(fast(listen_port=0, http_address=f"127.0.0.1:{port}")):
                raise AssertionError("served on a taken port")
