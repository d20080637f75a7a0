"""The status page in a real headless Chromium, on a real 3-member cluster.

The browser is driven over its DevTools protocol on a pair of pipes
(``--remote-debugging-pipe``: NUL-terminated JSON on file descriptors 3 and
4), so no client library is needed. The page is loaded once; a member is
killed; the test reads the rendered DOM until that member's row says DEAD,
which shows that the page refreshes itself.

Skipped where no Chromium binary is installed (CI installs Debian's
``chromium`` from ``.ci/run``). Set ``TRIO_SWIM_STATUS_SCREENSHOT=path.png``
to keep the screenshot (that is how ``docs/status-page.png`` is made).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_swim import Config, Member, Status, open_member
from trio_swim.member import run_member
from trio_swim.status import StatusServer, open_status_server
from trio_swim.testing import wait_converged
from trio_swim.transport import KillableTransport, open_udp_transport

from simcluster import everyone_sees, wait_until

CHROMIUM = next(
    (path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary on PATH (Debian: apt-get install chromium)"
)

# Largest DevTools message accepted (a screenshot in base64 is the largest).
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
# Flags that keep the browser headless and off the network beyond what the
# test asks it to load.
FLAGS = [
    "--headless",
    "--disable-gpu",
    "--remote-debugging-pipe",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-domain-reliability",
    "--no-pings",
    "--metrics-recording-only",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
    "--hide-scrollbars",
    "--window-size=900,520",
]
# The child maps the two pipe ends it inherited onto fds 3 and 4, where
# Chromium looks for them, then becomes Chromium.
TRAMPOLINE = (
    "import os, sys; a, b = int(sys.argv[1]), int(sys.argv[2]); "
    "os.dup2(a, 3); os.dup2(b, 4); os.close(a); os.close(b); "
    "os.execv(sys.argv[3], sys.argv[3:])"
)


class DevTools:
    """A minimal DevTools client: one command at a time, events ignored."""

    def __init__(self, send: trio.lowlevel.FdStream, receive: trio.lowlevel.FdStream) -> None:
        self._send = send
        self._receive = receive
        self._buffer = b""
        self._next_id = 0

    async def call(self, method: str, session: str | None = None, **params: Any) -> Any:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        await self._send.send_all(json.dumps(message).encode() + b"\0")
        while True:
            reply = await self._message()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply["result"]

    async def _message(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            if len(self._buffer) > MAX_MESSAGE_BYTES:
                raise AssertionError("DevTools message too large")
            chunk = await self._receive.receive_some(1 << 16)
            if not chunk:
                raise AssertionError("the browser closed its DevTools pipe")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\0", 1)
        result: dict[str, Any] = json.loads(line)
        return result


def _high_fd(fd: int) -> int:
    """A copy of ``fd`` numbered 10 or more (never 3 or 4), the original closed."""
    copy = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return copy


@asynccontextmanager
async def open_browser(profile: Path, log: Path) -> AsyncIterator[DevTools]:
    assert CHROMIUM is not None
    to_browser_read, to_browser_write = os.pipe()
    from_browser_read, from_browser_write = os.pipe()
    child_read, child_write = _high_fd(to_browser_read), _high_fd(from_browser_write)
    flags = [*FLAGS, f"--user-data-dir={profile}", "about:blank"]
    if os.geteuid() == 0:
        flags.insert(0, "--no-sandbox")  # Chromium refuses to run as root with it
    with log.open("wb") as log_file:
        try:
            process = await trio.lowlevel.open_process(
                [
                    sys.executable,
                    "-c",
                    TRAMPOLINE,
                    str(child_read),
                    str(child_write),
                    CHROMIUM,
                    *flags,
                ],
                pass_fds=(child_read, child_write),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
            )
        finally:
            os.close(child_read)
            os.close(child_write)
    send = trio.lowlevel.FdStream(to_browser_write)
    receive = trio.lowlevel.FdStream(from_browser_read)
    try:
        yield DevTools(send, receive)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            try:
                await DevTools(send, receive).call("Browser.close")
            except (AssertionError, trio.BrokenResourceError):
                pass
            await process.wait()
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
        await send.aclose()
        await receive.aclose()


def fast(**settings: Any) -> Config:
    return Config(
        heartbeat_millis=100, probe_timeout_millis=50, gossip_interval_millis=50, **settings
    )


@asynccontextmanager
async def cluster_with_a_victim() -> AsyncIterator[
    tuple[list[Member], StatusServer, KillableTransport]
]:
    """Three members on UDP: the first serves its status page, the third can be killed."""
    async with AsyncExitStack() as stack:
        server = await open_status_server("127.0.0.1:0")
        transport = await open_udp_transport("127.0.0.1", 0)
        first = await stack.enter_async_context(
            run_member(
                fast(metadata=b"role=api zone=a"),
                transport,
                rng=random.Random(1),
                incarnation=1,
                extra_tasks=(server,),
            )
        )
        second = await stack.enter_async_context(
            open_member(fast(listen_port=0, initial_hosts=[first.address], metadata=b"role=worker"))
        )
        victim_transport = KillableTransport(await open_udp_transport("127.0.0.1", 0))
        victim = await stack.enter_async_context(
            run_member(
                fast(initial_hosts=[first.address], metadata=b"\x00\x9f opaque"),
                victim_transport,
                rng=random.Random(3),
                incarnation=1,
            )
        )
        members = [first, second, victim]
        await wait_converged(*members, timeout=10)
        yield members, server, victim_transport


ROWS = """
[...document.querySelectorAll('#members tr')].map(row => {
  const status = row.querySelector('td.status');
  return {address: row.dataset.address, shown: status.innerText,
          color: getComputedStyle(status).color};
})
"""


# Render a crafted answer and read the metadata cells back at once (before
# the next refresh replaces them).
CRAFTED = """
render({address: "127.0.0.1:1", cluster: "c", local_health: 0, events: [], members: [
  {address: "127.0.0.1:1", status: "alive", incarnation: 1, metadata: "<b>role=api</b>"},
  {address: "127.0.0.1:2", status: "dead", incarnation: 1, metadata_b64: "AJ8gb3BhcXVl"},
  {address: "127.0.0.1:3", status: "left", incarnation: 1, metadata: ""}]});
[...document.querySelectorAll('#members td.meta')].map(cell => cell.innerText)
"""


async def rows(tools: DevTools, session: str) -> dict[str, dict[str, str]]:
    result = await tools.call("Runtime.evaluate", session, expression=ROWS, returnByValue=True)
    assert "exceptionDetails" not in result, result
    return {row["address"]: row for row in result["result"]["value"]}


async def evaluate(tools: DevTools, session: str, expression: str) -> Any:
    result = await tools.call(
        "Runtime.evaluate", session, expression=expression, returnByValue=True
    )
    assert "exceptionDetails" not in result, result
    return result["result"].get("value")


async def test_the_page_shows_a_killed_member_turn_dead(tmp_path: Path) -> None:
    async with cluster_with_a_victim() as (members, server, victim_transport):
        victim = members[2].address
        with trio.fail_after(30):
            async with open_browser(tmp_path / "profile", tmp_path / "chromium.log") as tools:
                target = await tools.call("Target.createTarget", url=f"http://{server.address}/")
                attached = await tools.call(
                    "Target.attachToTarget", targetId=target["targetId"], flatten=True
                )
                session = attached["sessionId"]

                async def shown() -> dict[str, dict[str, str]]:
                    return await rows(tools, session)

                with trio.fail_after(10):
                    while len(seen := await shown()) < 3:
                        await trio.sleep(0.1)
                assert set(seen) == {m.address for m in members}
                assert {row["shown"] for row in seen.values()} == {"ALIVE"}
                # Set once; a reload would lose it.
                await evaluate(tools, session, "window.loadedOnce = true")

                victim_transport.kill()
                await wait_until(everyone_sees(members[:2], victim, Status.DEAD), within=15)
                with trio.fail_after(5):
                    while (await shown())[victim]["shown"] != "DEAD":
                        await trio.sleep(0.1)

                seen = await shown()
                assert seen[members[0].address]["shown"] == "ALIVE"
                assert seen[victim]["color"] == "rgb(207, 34, 46)"
                assert seen[members[0].address]["color"] == "rgb(26, 127, 55)"
                assert await evaluate(tools, session, "window.loadedOnce") is True
                events = await evaluate(
                    tools, session, "document.getElementById('events').innerText"
                )
                assert victim in events
                assert "DEAD" in events
                assert (
                    await evaluate(tools, session, "document.getElementById('state').className")
                    == ""
                )

                shot = await tools.call("Page.captureScreenshot", session, format="png")
                # Metadata comes from the network: shown as text, never as HTML.
                crafted = await evaluate(tools, session, CRAFTED)
                assert crafted == ["<b>role=api</b>", "base64: AJ8gb3BhcXVl", ""]
    png = base64.b64decode(shot["data"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    keep = os.environ.get("TRIO_SWIM_STATUS_SCREENSHOT")
    if keep:
        await trio.Path(keep).write_bytes(png)
