"""``trio-swim members`` and ``trio-swim stats`` against a small HTTP server
that serves what a member's status endpoint answers (real sockets, 127.0.0.1)."""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import trio
from test_cli import CONVERGE_SECONDS, run_to_completion, running_member

from trio_swim import cli, status
from trio_swim.cli import build_parser, main, members_table, stats_lines

MEMBERS = {
    "address": "127.0.0.1:9000",
    "cluster": "blue",
    "local_health": 1,
    "members": [
        {"address": "127.0.0.1:9001", "status": "suspect", "incarnation": 7, "metadata": ""},
        {
            "address": "127.0.0.1:9000",
            "status": "alive",
            "incarnation": 1795519404877,
            "metadata": "role=db ✓",
        },
        {"address": "[::1]:9002", "status": "dead", "incarnation": 12, "metadata_b64": "AP8="},
        {"address": "127.0.0.1:10000", "status": "left", "incarnation": 3, "metadata": "x"},
    ],
    "events": [],
}
STATS = {
    "address": "127.0.0.1:9000",
    "statistics": {"packets_received": 1234, "dropped_malformed": 0, "probe_timeout": 0.05},
}


class Endpoint:
    """An HTTP server on 127.0.0.1 answering each path with a canned reply."""

    def __init__(self) -> None:
        self.replies: dict[str, tuple[int, bytes]] = {}
        self.requests: list[str] = []
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                endpoint.requests.append(self.path)
                status, body = endpoint.replies.get(self.path, (404, b"not found"))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"

    def serve(self, path: str, document: Any, status: int = 200) -> None:
        body = document if isinstance(document, bytes) else json.dumps(document).encode()
        self.replies[path] = (status, body)


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    server = Endpoint()
    thread = threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def no_proxy_or_swim_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SWIM_") or name.lower() in ("no_proxy", "http_proxy"):
            monkeypatch.delenv(name)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_members_prints_the_table_sorted_by_address(
    endpoint: Endpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint.serve("/members", MEMBERS)
    status, out, err = run(["members", "--http", endpoint.address], capsys)
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        "members seen by 127.0.0.1:9000 in cluster 'blue' (local health 1)",
        "ADDRESS          STATUS     INCARNATION  METADATA",
        "127.0.0.1:9000   alive    1795519404877  role=db ✓",
        "127.0.0.1:9001   suspect              7  -",
        "127.0.0.1:10000  left                 3  x",
        "[::1]:9002       dead                12  base64:AP8=",
    ]
    assert endpoint.requests == ["/members"]


def test_members_json_prints_the_answer_on_one_line(
    endpoint: Endpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint.serve("/members", MEMBERS)
    status, out, _ = run(["members", "--json", "--http", endpoint.address], capsys)
    assert status == 0
    assert out.count("\n") == 1
    assert json.loads(out) == MEMBERS


def test_stats_prints_one_line_per_statistic(
    endpoint: Endpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint.serve("/stats", STATS)
    status, out, err = run(["stats", "--http", endpoint.address], capsys)
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        "statistics of 127.0.0.1:9000",
        "packets_received   1234",
        "dropped_malformed     0",
        "probe_timeout      0.05",
    ]
    status, out, _ = run(["stats", "--json", "--http", endpoint.address], capsys)
    assert (status, json.loads(out)) == (0, STATS)


def test_the_endpoint_defaults_to_the_variable_and_a_wildcard_means_loopback(
    endpoint: Endpoint, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint.serve("/stats", STATS)
    port = endpoint.address.rsplit(":", 1)[1]
    monkeypatch.setenv("SWIM_HTTP_ADDRESS", f"0.0.0.0:{port}")
    status, out, _ = run(["stats"], capsys)
    assert status == 0
    assert out.startswith("statistics of 127.0.0.1:9000\n")


def test_without_an_endpoint_it_says_what_to_give(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(["members"], capsys)
    assert (status, out) == (2, "")
    assert err == "trio-swim members: error: give --http HOST:PORT (or set SWIM_HTTP_ADDRESS)\n"


def test_a_proxy_setting_is_not_used(
    endpoint: Endpoint, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint.serve("/stats", STATS)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nowhere = closed.getsockname()[1]
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{nowhere}")
    status, _, err = run(["stats", "--http", endpoint.address], capsys)
    assert (status, err) == (0, "")


def test_text_from_the_endpoint_cannot_drive_the_terminal() -> None:
    document = {
        "address": "127.0.0.1:1\x1b[2J",
        "members": [
            {
                "address": "127.0.0.1:1",
                "status": "alive",
                "incarnation": 1,
                "metadata": "\x1b]0;x\x07",
            }
        ],
    }
    lines = members_table(document)
    assert not any("\x1b" in line or "\x07" in line for line in lines)
    assert lines[0] == "members seen by 127.0.0.1:1\\x1b[2J"
    assert lines[2].endswith("  \\x1b]0;x\\x07")
    stats = stats_lines({"address": "a", "statistics": {"\x1b[31mred": "\x1b"}})
    assert stats[1:] == ['\\x1b[31mred  "\\u001b"']


def refused_port() -> int:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        return int(closed.getsockname()[1])


def test_a_refused_connection_is_one_line_and_status_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = refused_port()
    status, out, err = run(["members", "--http", f"127.0.0.1:{port}"], capsys)
    assert (status, out) == (1, "")
    assert err == (
        f"trio-swim members: error: cannot reach http://127.0.0.1:{port}/members: "
        "connection refused (is the member running with --http?)\n"
    )


def test_no_answer_is_one_line_and_status_1(capsys: pytest.CaptureFixture[str]) -> None:
    # Connections complete in the backlog of a socket that never accepts.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        status, out, err = run(["stats", "--timeout", "0.3", "--http", f"127.0.0.1:{port}"], capsys)
    assert (status, out) == (1, "")
    assert re.fullmatch(
        rf"trio-swim stats: error: cannot (reach|read) http://127\.0\.0\.1:{port}/stats: "
        r"no answer within 0\.3 s\n",
        err,
    )


def test_a_closed_connection_is_one_line_and_status_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as rude:
        rude.bind(("127.0.0.1", 0))
        rude.listen(4)
        port = rude.getsockname()[1]

        def hang_up() -> None:
            connection, _ = rude.accept()
            connection.recv(4096)
            connection.close()

        closer = threading.Thread(target=hang_up)
        closer.start()
        status, out, err = run(["stats", "--timeout", "5", "--http", f"127.0.0.1:{port}"], capsys)
        closer.join(5)
    assert (status, out) == (1, "")
    assert err.startswith(f"trio-swim stats: error: cannot read http://127.0.0.1:{port}/stats: ")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("command", "body", "status", "why"),
    [
        ("members", b"<html>not json</html>", 200, "the answer is not JSON"),
        ("members", b"[" * 100_000, 200, "the answer is not JSON"),
        ("members", b"", 200, "the answer is not JSON"),
        ("stats", b'{"address": "x"}', 500, "HTTP 500 Internal Server Error"),
        ("members", b'{"members": {}}', 200, 'unexpected answer: no "members" list'),
        ("members", b'{"members": [1]}', 200, "unexpected answer: a member that is not an object"),
        (
            "members",
            b'{"members": [{"address": "a:1", "incarnation": 1}]}',
            200,
            "unexpected answer: a member without an address or a status",
        ),
        (
            "members",
            b'{"members": [{"address": "a:1", "status": "alive", "incarnation": "1"}]}',
            200,
            "unexpected answer: incarnation of a:1 is not a whole number",
        ),
        ("stats", b'{"statistics": [1, 2]}', 200, 'unexpected answer: no "statistics" object'),
        ("stats", b"17", 200, 'unexpected answer: no "statistics" object'),
    ],
)
def test_a_bad_answer_is_one_line_and_status_1(
    command: str,
    body: bytes,
    status: int,
    why: str,
    endpoint: Endpoint,
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoint.serve(f"/{command}", body, status)
    exit_status, out, err = run([command, "--http", endpoint.address], capsys)
    assert (exit_status, out) == (1, "")
    assert err == f"trio-swim {command}: error: http://{endpoint.address}/{command}: {why}\n"


def test_an_answer_over_the_limit_is_refused(
    endpoint: Endpoint, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "_HTTP_MAX_BYTES", 1_048_576)
    endpoint.serve("/stats", {"statistics": {}, "padding": "x" * 1_048_576})
    status, out, err = run(["stats", "--http", endpoint.address], capsys)
    assert (status, out) == (1, "")
    assert err.endswith(": the answer is over 1 MiB\n")


def test_an_address_without_a_port_means_the_endpoint_default() -> None:
    assert cli._DEFAULT_HTTP_PORT == status.DEFAULT_HTTP_PORT
    parser = build_parser()
    assert parser.parse_args(["members", "--http", "127.0.0.1"]).http == "127.0.0.1:9990"
    assert parser.parse_args(["stats", "--http", "[::1]"]).http == "[::1]:9990"
    assert parser.parse_args(["run", "--http", "localhost"]).http == "localhost:9990"
    assert parser.parse_args(["run", "--http", "127.0.0.1:0"]).http == "127.0.0.1:0"


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_members_and_stats_of_a_running_member() -> None:
    endpoint = f"127.0.0.1:{free_tcp_port()}"
    async with (
        running_member("--http", endpoint, "--metadata", "role=db", "--cluster", "blue") as a,
        running_member("--join", a.address, "--metadata", "role=web", "--cluster", "blue") as b,
    ):
        await a.wait_for_event(CONVERGE_SECONDS, event="status", node=b.address, status="alive")
        assert any(f"status endpoint on http://{endpoint}/" in line for line in a.stderr)

        code, out, err = await run_to_completion(["members", "--http", endpoint])
        assert (code, err) == (0, "")
        title, header, *rows = out.splitlines()
        assert title == f"members seen by {a.address} in cluster 'blue' (local health 0)"
        assert header.split() == ["ADDRESS", "STATUS", "INCARNATION", "METADATA"]
        table = {row.split()[0]: row.split()[1:] for row in rows}
        assert set(table) == {a.address, b.address}
        assert table[a.address][0] == table[b.address][0] == "alive"

        code, out, _ = await run_to_completion(["members", "--json", "--http", endpoint])
        document = json.loads(out)
        assert code == 0
        assert document["address"] == a.address
        for entry in document["members"]:
            incarnation, metadata = table[entry["address"]][1:]
            assert int(incarnation) == entry["incarnation"]
            assert metadata == (entry["metadata"] or "-")

        code, out, err = await run_to_completion(["stats", "--http", endpoint])
        assert (code, err) == (0, "")
        lines = out.splitlines()
        assert lines[0] == f"statistics of {a.address}"
        received = dict(line.split() for line in lines[1:])
        assert int(received["packets_received"]) > 0

    with trio.fail_after(CONVERGE_SECONDS):
        code, out, err = await run_to_completion(["stats", "--http", endpoint])
    assert (code, out) == (1, "")
    assert "connection refused" in err, "the endpoint is gone with its member"
