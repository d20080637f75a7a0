"""One member on one "host" (a network namespace), driven by a test through stdin and stdout.

``tests/test_multihost.py`` runs this file in each namespace it made::

    ip netns exec NS python multihost_member.py '<Spec as JSON>'

The script installs a hostname resolver that knows only the names of
``Spec.hosts`` (through ``trio.socket.set_custom_hostname_resolver``, so no
real DNS is ever asked), opens a member with ``Spec.config``, prints
``{"started": ADDRESS, "bound": HOST:PORT}`` and then answers commands: one
JSON object per line on stdin, one JSON object per line on stdout
(:data:`COMMANDS` lists them). It leaves the cluster on ``{"do": "leave"}``
or at the end of stdin. Every wait is bounded by the command's ``timeout``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal, TypedDict

import trio

import trio_swim
from trio_swim.addresses import format_address

# What the script keeps of the broadcasts and messages it received.
MAX_KEPT = 256
# Longest command line read; a longer one ends the script.
MAX_LINE = 65_536
# Longest wait a command may ask for, in seconds.
MAX_TIMEOUT = 60.0
# How often the waits look at the membership table.
POLL_SECONDS = 0.02


class Spec(TypedDict):
    """What the script runs: the member's settings and the names it can resolve."""

    config: dict[str, Any]
    """Keyword arguments of :class:`trio_swim.Config` (JSON values only)."""
    hosts: dict[str, list[str]]
    """Host name -> IPv4 addresses it resolves to, in this order."""


# What trio.abc.HostnameResolver.getaddrinfo returns, one entry of it.
AddrInfo = (
    tuple[Literal[socket.AddressFamily.AF_INET], socket.SocketKind, int, str, tuple[str, int]]
    | tuple[
        Literal[socket.AddressFamily.AF_INET6],
        socket.SocketKind,
        int,
        str,
        tuple[str, int, int, int] | tuple[int, bytes],
    ]
)


class SeedResolver(trio.abc.HostnameResolver):
    """Resolves the names it was given and nothing else; remembers each lookup."""

    def __init__(self, hosts: dict[str, list[str]]) -> None:
        self._hosts = {name.lower().rstrip("."): list(ips) for name, ips in hosts.items()}
        self.lookups: deque[dict[str, Any]] = deque(maxlen=MAX_KEPT)
        """Each lookup of a known name: ``{"host", "port", "answer"}``, the last ones."""

    async def getaddrinfo(
        self,
        host: bytes | None,
        port: bytes | str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[AddrInfo]:
        """The addresses of a known IPv4 name; ``EAI_NONAME`` for any other name."""
        await trio.lowlevel.checkpoint()
        name = (host or b"").decode("ascii", "replace").lower().rstrip(".")
        ips = self._hosts.get(name)
        if ips is None or family not in (0, socket.AF_INET):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        number = int(port.decode() if isinstance(port, bytes) else port or 0)
        kinds = [socket.SocketKind(type)] if type else [socket.SOCK_STREAM, socket.SOCK_DGRAM]
        self.lookups.append({"host": name, "port": number, "answer": ips})
        answer: list[AddrInfo] = [
            (socket.AF_INET, kind, proto, "", (ip, number)) for ip in ips for kind in kinds
        ]
        return answer

    async def getnameinfo(
        self, sockaddr: tuple[str, int] | tuple[str, int, int, int], flags: int
    ) -> tuple[str, str]:
        """Numeric only: this resolver knows no reverse names."""
        await trio.lowlevel.checkpoint()
        return str(sockaddr[0]), str(sockaddr[1])


def view(member: trio_swim.Member) -> dict[str, str]:
    """Every member this one knows, with the status it gives it."""
    return {node.address: node.status.value for node in member.members()}


async def _poll(condition: Callable[[], bool], within: float) -> tuple[bool, float]:
    """Wait until ``condition()`` holds, at most ``within`` s: (held, seconds waited)."""
    started = trio.current_time()
    with trio.move_on_after(min(max(within, 0.0), MAX_TIMEOUT)):
        while not condition():
            await trio.sleep(POLL_SECONDS)
        return True, trio.current_time() - started
    return condition(), trio.current_time() - started


class Session:
    """The running member and what the commands need of it."""

    def __init__(self, member: trio_swim.Member, resolver: SeedResolver | None) -> None:
        self.member = member
        self.resolver = resolver
        self.received: deque[dict[str, Any]] = deque(maxlen=MAX_KEPT)

    async def collect(self) -> None:
        """Keep the broadcasts and messages that arrive."""
        async for event in self.member.events():
            if isinstance(event, trio_swim.BroadcastReceived):
                self.received.append(
                    {"kind": "broadcast", "origin": event.origin, "payload": _text(event.payload)}
                )
            elif isinstance(event, trio_swim.MessageReceived):
                self.received.append(
                    {
                        "kind": "message",
                        "origin": event.origin,
                        "payload": _text(event.payload),
                        "reliable": event.reliable,
                    }
                )

    async def wait_alive(self, command: dict[str, Any]) -> dict[str, Any]:
        """Wait until exactly ``addresses`` are ALIVE (this member included)."""
        wanted = set(command["addresses"])

        def alive() -> bool:
            return {n.address for n in self.member.healthy_members()} == wanted

        ok, after = await _poll(alive, float(command["timeout"]))
        return {"ok": ok, "after": after, "view": view(self.member)}

    async def wait_status(self, command: dict[str, Any]) -> dict[str, Any]:
        """Wait until the member at ``address`` has one of ``statuses``."""
        address, statuses = command["address"], set(command["statuses"])

        def reached() -> bool:
            node = self.member.get(address)
            return node is not None and node.status.value in statuses

        ok, after = await _poll(reached, float(command["timeout"]))
        return {"ok": ok, "after": after, "view": view(self.member)}

    async def send_reliable(self, command: dict[str, Any]) -> dict[str, Any]:
        """``Member.send_reliable`` (over TCP); the error's text if it failed."""
        started = trio.current_time()
        try:
            await self.member.send_reliable(command["address"], command["payload"].encode())
        except (OSError, ValueError) as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"ok": True, "after": trio.current_time() - started}

    async def received_items(self, command: dict[str, Any]) -> dict[str, Any]:
        """Wait until ``count`` broadcasts and messages arrived; return them."""
        count = int(command["count"])
        ok, _ = await _poll(lambda: len(self.received) >= count, float(command["timeout"]))
        return {"ok": ok, "received": list(self.received)}

    async def lookups(self, command: dict[str, Any]) -> dict[str, Any]:
        """The lookups the resolver answered."""
        await trio.lowlevel.checkpoint()
        return {"lookups": [] if self.resolver is None else list(self.resolver.lookups)}


COMMANDS: dict[str, Callable[[Session, dict[str, Any]], Awaitable[dict[str, Any]]]] = {
    "wait_alive": Session.wait_alive,
    "wait_status": Session.wait_status,
    "send_reliable": Session.send_reliable,
    "received": Session.received_items,
    "lookups": Session.lookups,
}
"""Command name (``"do"``) -> what answers it; ``"leave"`` ends the script."""


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _reply(answer: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


async def _commands(stdin: trio.lowlevel.FdStream) -> AsyncIterator[dict[str, Any]]:
    """Yield the JSON commands read on stdin, until its end or ``leave``."""
    pending = b""
    while True:
        while b"\n" not in pending:
            chunk = await stdin.receive_some(MAX_LINE)
            if not chunk or len(pending) > MAX_LINE:
                return
            pending += chunk
        line, pending = pending.split(b"\n", 1)
        if line.strip():
            yield json.loads(line)


async def _serve(session: Session) -> None:
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with stdin:
        async for command in _commands(stdin):
            name = str(command.get("do"))
            if name == "leave":
                _reply({"leaving": session.member.address})
                return
            handler = COMMANDS.get(name)
            if handler is None:
                _reply({"error": f"unknown command {name!r}"})
            else:
                _reply(await handler(session, command))


async def _main(spec: Spec) -> None:
    resolver = None
    if spec["hosts"]:
        resolver = SeedResolver(spec["hosts"])
        trio.socket.set_custom_hostname_resolver(resolver)
    config = trio_swim.Config(**spec["config"])
    async with trio_swim.open_member(config) as member:
        session = Session(member, resolver)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.collect)
            _reply(
                {
                    "started": member.address,
                    "bound": format_address(config.listen_ip, config.listen_port),
                }
            )
            await _serve(session)
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(_main, json.loads(sys.argv[1]))
