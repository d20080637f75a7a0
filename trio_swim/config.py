"""Member configuration: one frozen struct, validated on construction."""

from __future__ import annotations

import difflib
import ipaddress
import logging
import math
import os
from collections.abc import Mapping
from typing import Any

import msgspec

from .addresses import AddressError, is_canonical_ip_address, split_address
from .security import KEY_SIZES, MAX_KEYS, SEAL_OVERHEAD, decode_key

ENV_PREFIX = "SWIM_"

_logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the setting and value."""


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Everything a member needs to know; ``Config()`` is a valid single-host setup.

    Times are in the unit their name says. Each field can also be set through
    the environment as ``SWIM_<FIELD NAME IN CAPITALS>`` (see :meth:`from_env`).
    """

    cluster_name: str = "trio-swim"
    """Members only talk to members of the same cluster name."""
    listen_ip: str = "127.0.0.1"
    """IP address to bind; also the address other members use, unless ``advertise_address``
    is set (then it may be a wildcard, ``0.0.0.0`` or ``::``)."""
    listen_port: int = 9999
    """UDP port to bind, and the TCP port of the stream listener (the same number);
    0 picks a free port (see ``Member.address``)."""
    advertise_address: str = ""
    """The ``ip:port`` other members use to reach this one (empty: the bound address).

    For a member that binds a wildcard in a container, or behind a port
    mapping: set it to the routable address (a pod IP, a host's own address).
    Datagrams a member sends must still come from this IP unless packets are
    sealed (``secret_keys``): an unsealed datagram whose source differs from
    the sender it claims is dropped as spoofed.
    """
    heartbeat_millis: int = 250
    """The protocol period: one probe of one member per period."""
    initial_hosts: list[str] = []
    """Members to join on start, as ``host``, ``host:port`` or ``[v6]:port``."""
    max_broadcast_bytes: int = 256
    """Largest payload accepted by ``Member.broadcast``."""
    metadata: bytes = b""
    """What this member says about itself (role, version, API port ...), seen by every member.

    Travels with the member's ALIVE record and in every state exchange;
    ``Member.set_metadata`` changes it at run time. ``SWIM_METADATA`` takes
    UTF-8 text.
    """
    max_metadata_bytes: int = 512
    """Largest ``metadata`` (here and through ``Member.set_metadata``)."""
    stream_timeout_millis: int = 5000
    """Deadline of one TCP exchange (a reliable message, a state exchange), each way."""
    max_stream_bytes: int = 1_048_576
    """Largest frame sent or accepted over TCP (a reliable message, a state exchange)."""
    tcp_fallback_probe: bool = True
    """When a direct ping goes unanswered, also probe the member over TCP.

    Alongside the indirect probes; an answer over TCP saves the probe (counted
    as ``tcp_probes_saved``), which is the sign of a network that drops UDP.
    """
    multicast_enabled: bool = False
    """Announce on start and find members of the same cluster by IP multicast.

    Off by default, unlike Smudge: multicast works over the loopback interface
    too, so with it on every default member on a host (separate demos, test
    runs) would merge into one cluster. See :mod:`trio_swim.discovery`.
    """
    multicast_announce_interval: float = 10.0
    """Seconds between announcements; 0 announces only at start."""
    multicast_address: str = ""
    """Multicast group; empty picks 239.255.90.90 (IPv4) or ff02::5357 (IPv6)."""
    multicast_port: int = 9998
    """UDP port of the multicast group."""
    indirect_checks: int = 3
    """How many members are asked to probe a target that missed its direct ping."""
    retransmit_mult: int = 4
    """Each update is sent retransmit_mult x ceil(log10(n+1)) times."""
    suspicion_mult: int = 4
    """Minimum suspicion timeout is suspicion_mult x max(1, log10 n) periods."""
    suspicion_max_timeout_mult: int = 6
    """With lifeguard, a suspicion starts at this multiple of the minimum timeout."""
    max_packet_bytes: int = 1400
    """Largest datagram sent or accepted."""
    probe_timeout_millis: int = 100
    """Time to wait for a direct ack (the ceiling when adaptive); capped at half a period."""
    min_probe_timeout_millis: int = 10
    """Floor of the adaptive probe timeout (never above the probe timeout)."""
    adaptive_probe_timeout: bool = True
    """Derive the ack timeout from measured round-trip times (mean + 3 sigma)."""
    gossip_interval_millis: int = 200
    """Period of the extra gossip sends; 0 turns gossip fan-out off."""
    gossip_fanout: int = 3
    """Members each gossip round sends pending updates to."""
    leave_timeout_millis: int = 500
    """How long leaving waits for the LEFT announcement to go out."""
    lifeguard: bool = True
    """Local health awareness, nacks, dynamic suspicion and the buddy system."""
    awareness_max_multiplier: int = 8
    """Local health scales period and timeouts by at most this factor."""
    sync_interval_seconds: float = 30.0
    """Full-state exchange with one random member this often; 0 turns it off."""
    dead_retry_limit: int = 10
    """Probes of a DEAD member (1, 2, 4 ... periods apart) before it is removed."""
    dead_retry_max_periods: int = 64
    """Cap, in periods, on the gap between two retries of a DEAD member."""
    left_removal_seconds: float = 30.0
    """A LEFT member is removed this long after it left."""
    tombstone_seconds: float = 300.0
    """A removed member's last incarnation is remembered this long."""
    max_members: int = 10_000
    """Members beyond this number are not added (and counted as refused)."""
    event_buffer: int = 1024
    """Events buffered per subscriber before it is told it lagged."""
    secret_keys: list[bytes] = []
    """AES-GCM keys (16, 24 or 32 bytes each, at most 16, no repeats) that seal every packet.

    Empty: packets travel in plaintext. Otherwise the first key seals what
    this member sends and every key is tried on what it receives; packets that
    open under none are dropped (see :mod:`trio_swim.security` for what this
    does and does not protect). ``SWIM_SECRET_KEYS`` takes them as
    comma-separated standard base64, the primary first.

    The repr of a Config (as msgspec writes it) and any msgspec encoding of
    it show these bytes: do not log a Config that holds keys. Error messages
    never show them.
    """
    accept_plaintext: bool = False
    """With ``secret_keys``: also accept packets that are not sealed.

    For turning encryption on in a running cluster without a partition:
    first every member accepts plaintext and keeps sending it
    (``send_plaintext``), then every member seals (``send_plaintext`` off),
    then every member refuses plaintext (this off). Needs ``secret_keys``.
    """
    send_plaintext: bool = False
    """With ``secret_keys``: send packets unsealed (still accepting sealed ones).

    The first step of turning encryption on (see ``accept_plaintext``, which
    it needs). Needs ``secret_keys``.
    """

    http_address: str = ""
    """``host:port`` of the status endpoint (``/members``, ``/metrics`` ...); empty: off."""

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Build a Config from ``SWIM_<FIELD>`` variables; keyword arguments win.

        Every field can be set (``SWIM_LISTEN_PORT``, ``SWIM_HEARTBEAT_MILLIS``
        ...). ``SWIM_INITIAL_HOSTS`` is comma separated; booleans accept
        true/false/1/0/yes/no/on/off. ``SWIM_SECRET_KEYS`` is comma-separated
        standard base64 (padding optional), the primary key first. A bad value
        raises :class:`ConfigError` naming the variable, e.g.
        ``SWIM_LISTEN_PORT='70000': must be 0..65535``; for a secret the
        message names the variable and the key's position, never its value.

        When the heartbeat is set here but the probe timeouts are not, the
        timeouts shrink with it (to at most half a period), so that a short
        heartbeat alone is a valid setting.

        A ``SWIM_*`` variable that names no setting (a typo such as
        ``SWIM_HEARBEAT_MILLIS``) is logged as a warning on the
        ``trio_swim.config`` logger, with the closest known name (see
        :func:`unknown_env_variables`). For strict checking, call
        :func:`check_env_variables` first: it raises :class:`ConfigError`
        instead.
        """
        env = os.environ if environ is None else environ
        for complaint in unknown_env_variables(env):
            _logger.warning("%s", complaint)
        unknown = sorted(set(overrides) - set(_FIELD_TYPES))
        if unknown:
            raise ConfigError(f"{unknown[0]}: no such setting")
        settings = msgspec.structs.asdict(cls())
        from_environment: dict[str, str] = {}
        try:
            for name, value in overrides.items():
                _check_field(name, value)
        except _Invalid as exc:
            raise ConfigError(_message(exc.name, exc.name, overrides[exc.name], exc.why)) from None
        settings.update(overrides)
        for name, field_type in _FIELD_TYPES.items():
            variable = env_variable(name)
            if name in overrides or variable not in env:
                continue
            raw = env[variable]
            try:
                if name == "secret_keys":
                    settings[name] = _parse_secret_keys(raw)
                elif field_type is bytes:
                    # The bytes the variable held: os.environ decodes them with
                    # surrogateescape, which this undoes for bytes not UTF-8.
                    settings[name] = raw.encode("utf-8", "surrogateescape")
                elif not _is_text(raw):
                    raise _Invalid(name, "must be UTF-8 text")
                else:
                    settings[name] = _parse_env_value(field_type, raw)
                _check_field(name, settings[name])
            except _Invalid as exc:
                raise ConfigError(_message(variable, name, raw, exc.why)) from None
            from_environment[name] = raw
        try:
            _check_consistency(settings)
        except _Invalid as exc:
            if exc.name in from_environment:
                raw = from_environment[exc.name]
                raise ConfigError(
                    _message(env_variable(exc.name), exc.name, raw, exc.why)
                ) from None
            raise ConfigError(_message(exc.name, exc.name, settings[exc.name], exc.why)) from None
        return cls(**settings)

    @property
    def period(self) -> float:
        """The protocol period in seconds."""
        return self.heartbeat_millis / 1000

    @property
    def probe_timeout(self) -> float:
        """Seconds to wait for a direct ack: ``probe_timeout_millis``, at most half a period.

        The cap leaves the rest of the period for the indirect probes, so a
        short heartbeat needs no matching probe timeout.
        """
        return min(self.probe_timeout_millis, self.heartbeat_millis / 2) / 1000

    @property
    def min_probe_timeout(self) -> float:
        """Floor of the adaptive probe timeout in seconds (never above :attr:`probe_timeout`)."""
        return min(self.min_probe_timeout_millis / 1000, self.probe_timeout)


def env_variable(name: str) -> str:
    """The environment variable of a Config field: ``listen_port`` -> ``SWIM_LISTEN_PORT``."""
    return ENV_PREFIX + name.upper()


def unknown_env_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """One complaint per ``SWIM_*`` variable of ``environ`` that names no setting.

    ``environ`` defaults to ``os.environ``. The prefix is matched in any case
    (``Swim_listen_port`` is a mistake too, since only upper case is read).
    Each complaint names the variable and, when one is close enough, the
    setting it probably meant: ``SWIM_HEARBEAT_MILLIS: unknown, did you mean
    SWIM_HEARTBEAT_MILLIS?``. Sorted by variable name; empty when all is well.
    """
    env = os.environ if environ is None else environ
    known = [env_variable(name) for name in _FIELD_TYPES]
    known_set = set(known)
    complaints = []
    for variable in sorted(env):
        if variable[: len(ENV_PREFIX)].upper() != ENV_PREFIX or variable in known_set:
            continue
        shown = _printable(variable)
        guess = _closest_variable(variable, known)
        if guess is None:
            complaints.append(f"{shown}: unknown (no setting has a similar name)")
        else:
            complaints.append(f"{shown}: unknown, did you mean {guess}?")
    return complaints


def check_env_variables(environ: Mapping[str, str] | None = None) -> None:
    """Raise :class:`ConfigError` if a ``SWIM_*`` variable names no setting.

    The strict form of the warning :meth:`Config.from_env` logs (and what
    ``trio-swim run --strict-env`` does): the message is the first of
    :func:`unknown_env_variables`, with how many more there are.
    """
    complaints = unknown_env_variables(environ)
    if complaints:
        more = f" (and {len(complaints) - 1} more)" if len(complaints) > 1 else ""
        raise ConfigError(complaints[0] + more)


def _closest_variable(variable: str, known: list[str]) -> str | None:
    upper = variable.upper()
    if upper in known:
        return upper
    # Compared without the prefix every name shares, which would make any two
    # names look alike.
    prefix = len(ENV_PREFIX)
    matches = difflib.get_close_matches(upper[prefix:], [name[prefix:] for name in known], n=1)
    return ENV_PREFIX + matches[0] if matches else None


def _is_text(value: str) -> bool:
    """False for a string holding bytes that were not UTF-8 (as surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(text: str) -> str:
    """``text`` with anything a terminal would act on (controls, escapes) escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# Settings whose values never appear in an error message.
_SECRET_FIELDS: frozenset[str] = frozenset({"secret_keys"})


def _message(label: str, name: str, value: Any, why: str) -> str:
    """``label=value: why``, or ``label: why`` when ``name`` is a secret."""
    if name in _SECRET_FIELDS:
        return f"{label}: {why}"
    text = repr(value)
    if len(text) > 72:
        text = text[:60] + "..." + text[-8:]
    return f"{label}={text}: {why}"


class _Invalid(Exception):
    """One setting is wrong; turned into a ConfigError naming a field or a variable."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(name, why)
        self.name = name
        self.why = why


_FIELD_TYPES: dict[str, type] = {
    f.name: f.type if isinstance(f.type, type) else list for f in msgspec.structs.fields(Config)
}


def _parse_env_value(field_type: type, raw: str) -> Any:
    text = raw.strip()
    if field_type is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise _Invalid("", "must be true or false")
    if field_type is int:
        try:
            return int(text)
        except ValueError:
            raise _Invalid("", "must be a whole number") from None
    if field_type is float:
        try:
            return float(text)
        except ValueError:
            raise _Invalid("", "must be a number") from None
    if field_type is list:
        return [part.strip() for part in text.split(",") if part.strip()]
    if field_type is bytes:
        return raw.encode()
    return raw


def _parse_secret_keys(raw: str) -> list[bytes]:
    """Comma-separated standard base64, padding optional; empty items are skipped."""
    keys: list[bytes] = []
    for position, part in enumerate((p.strip() for p in raw.split(",") if p.strip()), 1):
        try:
            keys.append(decode_key(part))
        except ValueError:
            raise _Invalid("secret_keys", f"key {position} is not base64") from None
    return keys


def _secret_key_problem(keys: Any) -> str | None:
    """What is wrong with ``keys`` as ``Config.secret_keys``, or None if nothing is.

    The answer names positions (counting from 1) and lengths, never key bytes.
    """
    if not isinstance(keys, list) or not all(isinstance(key, bytes) for key in keys):
        return "must be a list of bytes"
    if len(keys) > MAX_KEYS:
        return (
            f"{len(keys)} keys: at most {MAX_KEYS} "
            "(each received packet may be tried against every key)"
        )
    sizes = ", ".join(map(str, KEY_SIZES[:-1])) + f" or {KEY_SIZES[-1]}"
    first_seen: dict[bytes, int] = {}
    for position, key in enumerate(keys, 1):
        if len(key) not in KEY_SIZES:
            return f"key {position} is {len(key)} bytes: must be {sizes}"
        if key in first_seen:
            return f"key {position} repeats key {first_seen[key]}"
        first_seen[key] = position
    return None


def _check_type(name: str, value: Any, kind: type) -> None:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise _Invalid(name, f"must be {kind.__name__}")


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise _Invalid(name, "must be finite")
    if not low <= value <= high:
        high_text = "" if high == math.inf else _number_text(high)
        raise _Invalid(name, f"must be {_number_text(low)}..{high_text}")


def _number_text(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


# (low, high) for every numeric setting.
_RANGES: dict[str, tuple[float, float]] = {
    "listen_port": (0, 65535),
    # 2 at least: the probe timeout (1 ms or more) must fit inside the period.
    "heartbeat_millis": (2, 3_600_000),
    "max_broadcast_bytes": (1, 65_000),
    "multicast_announce_interval": (0, 86_400),
    "multicast_port": (1, 65535),
    "indirect_checks": (0, 64),
    "retransmit_mult": (1, 100),
    "suspicion_mult": (1, 100),
    "suspicion_max_timeout_mult": (1, 100),
    "max_packet_bytes": (512, 65_000),
    "probe_timeout_millis": (1, 3_600_000),
    "min_probe_timeout_millis": (1, 3_600_000),
    "gossip_interval_millis": (0, 3_600_000),
    "gossip_fanout": (0, 64),
    "leave_timeout_millis": (0, 3_600_000),
    "awareness_max_multiplier": (1, 64),
    "sync_interval_seconds": (0, 86_400),
    "dead_retry_limit": (0, 64),
    "dead_retry_max_periods": (1, 1_000_000),
    "left_removal_seconds": (0, 86_400 * 7),
    "tombstone_seconds": (0, 86_400 * 7),
    "max_members": (2, 1_000_000),
    "event_buffer": (1, 1_000_000),
    "max_metadata_bytes": (0, 60_000),
    "stream_timeout_millis": (1, 3_600_000),
    "max_stream_bytes": (65_536, 256 * 1_048_576),
}
# Room a member's record takes in a datagram besides its metadata (address,
# source, incarnation, tags), with some to spare.
RECORD_ROOM = 160


def _validate(cfg: Config) -> None:
    try:
        for name in _FIELD_TYPES:
            _check_field(name, getattr(cfg, name))
        _check_consistency(msgspec.structs.asdict(cfg))
    except _Invalid as exc:
        raise ConfigError(_message(exc.name, exc.name, getattr(cfg, exc.name), exc.why)) from None


def _check_field(name: str, value: Any) -> None:
    """Check one setting on its own (its type, range and form)."""
    kind = _FIELD_TYPES[name]
    if name == "secret_keys":
        problem = _secret_key_problem(value)
        if problem is not None:
            raise _Invalid(name, problem)
        return
    if kind is list:
        if not isinstance(value, list) or not all(isinstance(h, str) for h in value):
            raise _Invalid(name, "must be a list of 'host:port' strings")
        for host in value:
            try:
                split_address(host)
            except AddressError as exc:
                raise _Invalid(name, str(exc)) from None
        return
    _check_type(name, value, kind)
    if name in _RANGES:
        _check_range(name, value, *_RANGES[name])
    if name == "cluster_name" and not 1 <= len(value.encode()) <= 64:
        raise _Invalid(name, "must be 1..64 bytes")
    if name == "listen_ip":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise _Invalid(name, "must be an IPv4 or IPv6 address") from None
    if name == "advertise_address" and value:
        if not is_canonical_ip_address(value):
            raise _Invalid(
                name, "must be an IP address and port, as 10.0.0.7:9999 or [fd00::7]:9999"
            )
        if ipaddress.ip_address(split_address(value)[0]).is_unspecified:
            raise _Invalid(name, "must be an address other members can reach")
    if name == "http_address" and value:
        try:
            split_address(value)
        except AddressError as exc:
            raise _Invalid(name, str(exc)) from None
    if name == "multicast_address" and value:
        try:
            group = ipaddress.ip_address(value)
        except ValueError:
            group = None
        if group is None or not group.is_multicast:
            raise _Invalid(name, "must be a multicast group")


def _check_consistency(settings: Mapping[str, Any]) -> None:
    """Check the settings that constrain each other (each one already valid alone)."""
    keyed = bool(settings["secret_keys"])
    # Sealing adds its overhead to every packet.
    header_room = 200 + (SEAL_OVERHEAD if keyed else 0)
    if settings["max_broadcast_bytes"] > settings["max_packet_bytes"] - header_room:
        sealed = " when packets are sealed" if keyed else ""
        raise _Invalid(
            "max_broadcast_bytes",
            f"must leave {header_room} bytes of max_packet_bytes "
            f"({settings['max_packet_bytes']}){sealed}",
        )
    if (
        ipaddress.ip_address(settings["listen_ip"]).is_unspecified
        and not settings["advertise_address"]
    ):
        raise _Invalid(
            "listen_ip",
            "a wildcard needs advertise_address (SWIM_ADVERTISE_ADDRESS, --advertise): "
            "the address other members can reach",
        )
    if settings["advertise_address"]:
        advertised_v6 = ":" in split_address(settings["advertise_address"])[0]
        if advertised_v6 != (":" in settings["listen_ip"]):
            families = ("IPv6", "IPv4") if advertised_v6 else ("IPv4", "IPv6")
            raise _Invalid("advertise_address", "is {} but listen_ip is {}".format(*families))
    if len(settings["metadata"]) > settings["max_metadata_bytes"]:
        raise _Invalid(
            "metadata",
            f"is {len(settings['metadata'])} bytes: over max_metadata_bytes "
            f"({settings['max_metadata_bytes']})",
        )
    if settings["max_metadata_bytes"] > settings["max_packet_bytes"] - header_room - RECORD_ROOM:
        raise _Invalid(
            "max_metadata_bytes",
            f"must leave {header_room + RECORD_ROOM} bytes of max_packet_bytes "
            f"({settings['max_packet_bytes']}): a member's record must fit in one datagram",
        )
    for name in ("accept_plaintext", "send_plaintext"):
        if settings[name] and not keyed:
            raise _Invalid(name, "needs secret_keys (without keys every packet is plaintext)")
    if settings["send_plaintext"] and not settings["accept_plaintext"]:
        raise _Invalid(
            "send_plaintext",
            "needs accept_plaintext (members that send plaintext must accept it too)",
        )
