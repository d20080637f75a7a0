"""Config.from_env: every SWIM_* variable, precedence, and the error messages."""

from __future__ import annotations

import base64
import logging
import os
import re
from typing import Any

import msgspec
import pytest

from trio_swim import Config, ConfigError
from trio_swim.config import check_env_variables, unknown_env_variables

KEY_16 = bytes(range(16))
KEY_32 = bytes(range(100, 132))
B64_16 = base64.b64encode(KEY_16).decode()
B64_32 = base64.b64encode(KEY_32).decode()

# For every Config field: a value of its SWIM_* variable other than the
# default, and what it must become.
ENV_EXAMPLES: dict[str, tuple[str, Any]] = {
    "cluster_name": ("blue", "blue"),
    "listen_ip": ("::1", "::1"),
    "listen_port": ("12345", 12345),
    "heartbeat_millis": ("500", 500),
    "initial_hosts": (
        "127.0.0.1:1, [::1]:2,10.0.0.3,",
        ["127.0.0.1:1", "[::1]:2", "10.0.0.3"],
    ),
    "max_broadcast_bytes": ("512", 512),
    "multicast_enabled": ("true", True),
    "multicast_announce_interval": ("2.5", 2.5),
    "multicast_address": ("239.1.2.3", "239.1.2.3"),
    "multicast_port": ("9000", 9000),
    "indirect_checks": ("5", 5),
    "retransmit_mult": ("6", 6),
    "suspicion_mult": ("5", 5),
    "suspicion_max_timeout_mult": ("3", 3),
    "max_packet_bytes": ("1200", 1200),
    "probe_timeout_millis": ("80", 80),
    "min_probe_timeout_millis": ("20", 20),
    "adaptive_probe_timeout": ("false", False),
    "gossip_interval_millis": ("0", 0),
    "gossip_fanout": ("2", 2),
    "leave_timeout_millis": ("1000", 1000),
    "lifeguard": ("no", False),
    "awareness_max_multiplier": ("4", 4),
    "sync_interval_seconds": ("0", 0.0),
    "dead_retry_limit": ("3", 3),
    "dead_retry_max_periods": ("16", 16),
    "left_removal_seconds": ("5", 5.0),
    "tombstone_seconds": ("60", 60.0),
    "max_members": ("500", 500),
    "event_buffer": ("64", 64),
    "secret_keys": (f"{B64_16}, {B64_32.rstrip('=')}", [KEY_16, KEY_32]),
    "accept_plaintext": ("true", True),
    "send_plaintext": ("on", True),
    "advertise_address": ("[::1]:7000", "[::1]:7000"),
    "metadata": ("role=db \u00e9", "role=db \u00e9".encode()),
    "max_metadata_bytes": ("100", 100),
    "stream_timeout_millis": ("250", 250),
    "max_stream_bytes": ("100000", 100_000),
    "tcp_fallback_probe": ("off", False),
    "http_address": ("127.0.0.1:8080", "127.0.0.1:8080"),
}

# Variables some examples need beside their own to be valid.
ENV_NEEDS: dict[str, dict[str, str]] = {
    "accept_plaintext": {"SWIM_SECRET_KEYS": B64_16},
    "send_plaintext": {"SWIM_SECRET_KEYS": B64_16, "SWIM_ACCEPT_PLAINTEXT": "1"},
    "advertise_address": {"SWIM_LISTEN_IP": "::"},
}

# The variables Smudge documents, under our prefix.
SMUDGE_VARIABLES = [
    "SWIM_CLUSTER_NAME",
    "SWIM_HEARTBEAT_MILLIS",
    "SWIM_INITIAL_HOSTS",
    "SWIM_LISTEN_PORT",
    "SWIM_LISTEN_IP",
    "SWIM_MAX_BROADCAST_BYTES",
    "SWIM_MULTICAST_ENABLED",
    "SWIM_MULTICAST_ANNOUNCE_INTERVAL",
    "SWIM_MULTICAST_ADDRESS",
    "SWIM_MULTICAST_PORT",
]


def variable(field: str) -> str:
    return "SWIM_" + field.upper()


def field_names() -> list[str]:
    return [f.name for f in msgspec.structs.fields(Config)]


def test_every_field_has_an_example() -> None:
    assert sorted(ENV_EXAMPLES) == sorted(field_names())


def test_smudge_variables_are_all_settings() -> None:
    assert set(SMUDGE_VARIABLES) <= {variable(name) for name in field_names()}


@pytest.mark.parametrize("field", sorted(ENV_EXAMPLES))
def test_each_variable_sets_its_field(field: str) -> None:
    raw, expected = ENV_EXAMPLES[field]
    default = getattr(Config(), field)
    assert expected != default, "the example must differ from the default"
    cfg = Config.from_env({**ENV_NEEDS.get(field, {}), variable(field): raw})
    assert getattr(cfg, field) == expected
    assert type(getattr(cfg, field)) is type(expected)


def test_all_variables_together() -> None:
    env = {variable(field): raw for field, (raw, _) in ENV_EXAMPLES.items()}
    cfg = Config.from_env(env)
    assert {field: getattr(cfg, field) for field in ENV_EXAMPLES} == {
        field: expected for field, (_, expected) in ENV_EXAMPLES.items()
    }


def test_no_variables_gives_the_smudge_defaults() -> None:
    cfg = Config.from_env({})
    assert cfg == Config()
    assert (cfg.listen_ip, cfg.listen_port) == ("127.0.0.1", 9999)
    assert cfg.heartbeat_millis == 250
    assert cfg.max_broadcast_bytes == 256
    assert cfg.multicast_port == 9998
    assert cfg.initial_hosts == []


def test_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWIM_LISTEN_PORT", "4242")
    monkeypatch.setenv("SWIM_CLUSTER_NAME", "from-os")
    cfg = Config.from_env()
    assert (cfg.listen_port, cfg.cluster_name) == (4242, "from-os")


def test_keyword_arguments_win_over_the_environment() -> None:
    env = {
        "SWIM_LISTEN_PORT": "4242",
        "SWIM_CLUSTER_NAME": "from-env",
        "SWIM_INITIAL_HOSTS": "127.0.0.1:1",
        "SWIM_MULTICAST_ENABLED": "yes",
    }
    cfg = Config.from_env(
        env, listen_port=0, initial_hosts=["127.0.0.1:2"], multicast_enabled=False
    )
    assert cfg.listen_port == 0
    assert cfg.initial_hosts == ["127.0.0.1:2"]
    assert cfg.multicast_enabled is False
    assert cfg.cluster_name == "from-env"


def test_a_keyword_argument_hides_a_bad_variable() -> None:
    cfg = Config.from_env({"SWIM_LISTEN_PORT": "70000"}, listen_port=5)
    assert cfg.listen_port == 5


def test_unrelated_variables_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    assert Config.from_env({"PATH": "/bin", "LISTEN_PORT": "1", "SWIMMER": "x"}) == Config()
    assert caplog.records == []


# ------------------------------------------------ unknown SWIM_* variables


def test_an_unknown_variable_is_a_warning_naming_the_closest_setting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="trio_swim.config")
    cfg = Config.from_env({"SWIM_HEARBEAT_MILLIS": "100", "SWIM_LISTEN_PORT": "5"})
    assert cfg == Config(listen_port=5), "the misspelt setting is not applied"
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            "trio_swim.config",
            logging.WARNING,
            "SWIM_HEARBEAT_MILLIS: unknown, did you mean SWIM_HEARTBEAT_MILLIS?",
        )
    ]


def test_the_process_environment_is_checked_too(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWIM_INITIAL_HOST", "127.0.0.1:1")
    Config.from_env()
    assert "SWIM_INITIAL_HOST: unknown, did you mean SWIM_INITIAL_HOSTS?" in caplog.messages


def test_the_strict_check_raises_for_an_unknown_variable(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"SWIM_SECRET_KEY": "x", "SWIM_LISTEN_PORT": "5"}
    with pytest.raises(
        ConfigError, match=r"^SWIM_SECRET_KEY: unknown, did you mean SWIM_SECRET_KEYS\?$"
    ):
        check_env_variables(env)
    with pytest.raises(ConfigError, match=r"^SWIM_A: unknown .*\(and 1 more\)$"):
        check_env_variables({"SWIM_A": "1", "SWIM_B": "2"})
    check_env_variables({"SWIM_LISTEN_PORT": "5", "PATH": "/bin"})
    for name in [n for n in os.environ if n.upper().startswith("SWIM_")]:
        monkeypatch.delenv(name)
    check_env_variables()
    monkeypatch.setenv("SWIM_LISTEN_PROT", "1")
    with pytest.raises(ConfigError, match=r"^SWIM_LISTEN_PROT: unknown, did you mean"):
        check_env_variables()
    assert caplog.records == [], "raised, not logged"


@pytest.mark.parametrize(
    ("variable", "complaint"),
    [
        (
            "SWIM_HEARBEAT_MILLIS",
            "SWIM_HEARBEAT_MILLIS: unknown, did you mean SWIM_HEARTBEAT_MILLIS?",
        ),
        ("SWIM_LISTEN_PROT", "SWIM_LISTEN_PROT: unknown, did you mean SWIM_LISTEN_PORT?"),
        ("swim_listen_port", "swim_listen_port: unknown, did you mean SWIM_LISTEN_PORT?"),
        ("Swim_Lifeguard", "Swim_Lifeguard: unknown, did you mean SWIM_LIFEGUARD?"),
        ("SWIM_ADVERTISE", "SWIM_ADVERTISE: unknown, did you mean SWIM_ADVERTISE_ADDRESS?"),
        ("SWIM_FOO", "SWIM_FOO: unknown (no setting has a similar name)"),
        ("SWIM_", "SWIM_: unknown (no setting has a similar name)"),
        ("SWIM_\x1b[2J", "SWIM_\\x1b[2J: unknown (no setting has a similar name)"),
    ],
)
def test_unknown_variable_complaints(variable: str, complaint: str) -> None:
    assert unknown_env_variables({variable: "1", "SWIM_LISTEN_PORT": "1"}) == [complaint]


def test_no_complaint_for_known_variables() -> None:
    env = {variable(field): raw for field, (raw, _) in ENV_EXAMPLES.items()}
    assert unknown_env_variables(env) == []
    assert unknown_env_variables({}) == []


def test_complaints_are_sorted_by_variable() -> None:
    complaints = unknown_env_variables({"SWIM_ZZZ": "", "SWIM_AAA": "", "SWIM_MMM": ""})
    assert [c.split(":")[0] for c in complaints] == ["SWIM_AAA", "SWIM_MMM", "SWIM_ZZZ"]


# ------------------------------------------------ bytes that are not UTF-8


def test_metadata_keeps_bytes_that_are_not_utf8() -> None:
    # os.environ hands b"role=\xff" over as "role=\udcff" (surrogateescape).
    assert Config.from_env({"SWIM_METADATA": "role=\udcff"}).metadata == b"role=\xff"


def test_a_text_setting_that_is_not_utf8_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"^SWIM_CLUSTER_NAME='a\\udcffb': must be UTF-8 text$"):
        Config.from_env({"SWIM_CLUSTER_NAME": "a\udcffb"})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("TRUE", True),
        (" yes ", True),
        ("On", True),
        ("0", False),
        ("false", False),
        ("NO", False),
        ("off", False),
    ],
)
def test_boolean_spellings(raw: str, expected: bool) -> None:
    assert Config.from_env({"SWIM_LIFEGUARD": raw}).lifeguard is expected


def test_numbers_may_be_padded_with_spaces() -> None:
    cfg = Config.from_env({"SWIM_LISTEN_PORT": " 9000 ", "SWIM_TOMBSTONE_SECONDS": " 1.5"})
    assert (cfg.listen_port, cfg.tombstone_seconds) == (9000, 1.5)


def test_empty_initial_hosts_means_none() -> None:
    assert Config.from_env({"SWIM_INITIAL_HOSTS": " , "}).initial_hosts == []


def test_a_short_heartbeat_alone_is_valid() -> None:
    cfg = Config.from_env({"SWIM_HEARTBEAT_MILLIS": "100"})
    assert cfg.heartbeat_millis == 100
    assert cfg.probe_timeout_millis == 100
    assert cfg.probe_timeout == 0.05


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SWIM_LISTEN_PORT": "70000"}, "SWIM_LISTEN_PORT='70000': must be 0..65535"),
        ({"SWIM_LISTEN_PORT": "-1"}, "SWIM_LISTEN_PORT='-1': must be 0..65535"),
        ({"SWIM_LISTEN_PORT": "ninety"}, "SWIM_LISTEN_PORT='ninety': must be a whole number"),
        ({"SWIM_LISTEN_PORT": ""}, "SWIM_LISTEN_PORT='': must be a whole number"),
        ({"SWIM_HEARTBEAT_MILLIS": "1"}, "SWIM_HEARTBEAT_MILLIS='1': must be 2..3600000"),
        ({"SWIM_HEARTBEAT_MILLIS": "2.5"}, "SWIM_HEARTBEAT_MILLIS='2.5': must be a whole number"),
        (
            {"SWIM_MULTICAST_ENABLED": "maybe"},
            "SWIM_MULTICAST_ENABLED='maybe': must be true or false",
        ),
        (
            {"SWIM_MULTICAST_ANNOUNCE_INTERVAL": "soon"},
            "SWIM_MULTICAST_ANNOUNCE_INTERVAL='soon': must be a number",
        ),
        ({"SWIM_TOMBSTONE_SECONDS": "nan"}, "SWIM_TOMBSTONE_SECONDS='nan': must be finite"),
        (
            {"SWIM_INITIAL_HOSTS": "127.0.0.1:1,127.0.0.1:x"},
            "SWIM_INITIAL_HOSTS='127.0.0.1:1,127.0.0.1:x': '127.0.0.1:x': port 'x' is not a number",
        ),
        ({"SWIM_LISTEN_IP": "localhost"}, "SWIM_LISTEN_IP='localhost': must be an IPv4 or IPv6"),
        (
            {"SWIM_LISTEN_IP": "0.0.0.0"},
            "SWIM_LISTEN_IP='0.0.0.0': a wildcard needs advertise_address "
            "(SWIM_ADVERTISE_ADDRESS, --advertise): the address other members can reach",
        ),
        (
            {"SWIM_MULTICAST_ADDRESS": "10.0.0.1"},
            "SWIM_MULTICAST_ADDRESS='10.0.0.1': must be a multicast group",
        ),
        ({"SWIM_CLUSTER_NAME": ""}, "SWIM_CLUSTER_NAME='': must be 1..64 bytes"),
        ({"SWIM_MAX_MEMBERS": "1"}, "SWIM_MAX_MEMBERS='1': must be 2..1000000"),
        (
            {"SWIM_MAX_BROADCAST_BYTES": "1300"},
            "SWIM_MAX_BROADCAST_BYTES='1300': must leave 200 bytes of max_packet_bytes (1400)",
        ),
    ],
)
def test_a_bad_value_names_the_variable_and_the_value(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        Config.from_env(env)


def test_a_bad_keyword_argument_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"^listen_port='9999': must be int$"):
        Config.from_env({}, listen_port="9999")
    with pytest.raises(ConfigError, match=r"^listen_prot: no such setting$"):
        Config.from_env({}, listen_prot=1)


def test_a_conflict_with_a_keyword_argument_names_the_setting() -> None:
    message = "max_broadcast_bytes=500: must leave 200 bytes of max_packet_bytes (600)"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        Config.from_env({"SWIM_MAX_PACKET_BYTES": "600"}, max_broadcast_bytes=500)


# ------------------------------------------------------------- secrets


def test_secret_keys_spellings() -> None:
    def keys(raw: str) -> list[bytes]:
        return Config.from_env({"SWIM_SECRET_KEYS": raw}).secret_keys

    assert keys(B64_16) == [KEY_16]
    assert keys(f" {B64_32} ,{B64_16},") == [KEY_32, KEY_16]
    assert keys(B64_16.rstrip("=")) == [KEY_16]
    assert keys("") == keys(" , ") == []
    key_24 = bytes(range(50, 74))
    assert keys(base64.b64encode(key_24).decode()) == [key_24]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (f"{B64_16},not-base64!", "SWIM_SECRET_KEYS: key 2 is not base64"),
        (B64_16.replace("A", "_"), "SWIM_SECRET_KEYS: key 1 is not base64"),
        (
            f"{B64_16},{base64.b64encode(KEY_32[:20]).decode()}",
            "SWIM_SECRET_KEYS: key 2 is 20 bytes: must be 16, 24 or 32",
        ),
        (f"{B64_16},{B64_32},{B64_16.rstrip('=')}", "SWIM_SECRET_KEYS: key 3 repeats key 1"),
        (
            ",".join(base64.b64encode(bytes([i]) * 16).decode() for i in range(17)),
            "SWIM_SECRET_KEYS: 17 keys: at most 16",
        ),
    ],
)
def test_a_bad_secret_key_is_named_by_position_never_shown(raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}") as info:
        Config.from_env({"SWIM_SECRET_KEYS": raw})
    text = str(info.value)
    assert raw not in text
    for part in raw.split(","):
        assert part.strip().rstrip("=") not in text
    assert "=" not in text


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SWIM_ACCEPT_PLAINTEXT": "true"},
            "SWIM_ACCEPT_PLAINTEXT='true': needs secret_keys",
        ),
        (
            {"SWIM_SEND_PLAINTEXT": "true", "SWIM_ACCEPT_PLAINTEXT": "true"},
            "SWIM_ACCEPT_PLAINTEXT='true': needs secret_keys",
        ),
        (
            {"SWIM_SECRET_KEYS": B64_16, "SWIM_SEND_PLAINTEXT": "yes"},
            "SWIM_SEND_PLAINTEXT='yes': needs accept_plaintext",
        ),
        (
            {"SWIM_SECRET_KEYS": B64_16, "SWIM_ACCEPT_PLAINTEXT": "maybe"},
            "SWIM_ACCEPT_PLAINTEXT='maybe': must be true or false",
        ),
        (
            {"SWIM_SECRET_KEYS": B64_16, "SWIM_MAX_BROADCAST_BYTES": "1200"},
            "SWIM_MAX_BROADCAST_BYTES='1200': must leave 229 bytes of max_packet_bytes (1400) "
            "when packets are sealed",
        ),
    ],
)
def test_plaintext_switches_need_keys_and_each_other(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}") as info:
        Config.from_env(env)
    assert B64_16 not in str(info.value)


def test_keyword_keys_win_over_the_variable() -> None:
    env = {"SWIM_SECRET_KEYS": B64_16, "SWIM_ACCEPT_PLAINTEXT": "true"}
    cfg = Config.from_env(env, secret_keys=[KEY_32])
    assert (cfg.secret_keys, cfg.accept_plaintext) == ([KEY_32], True)
    hidden = Config.from_env({"SWIM_SECRET_KEYS": "not base64!"}, secret_keys=[KEY_16])
    assert hidden.secret_keys == [KEY_16]
    plain = Config.from_env(env, accept_plaintext=False)
    assert (plain.secret_keys, plain.accept_plaintext) == ([KEY_16], False)


def test_a_conflict_with_keyword_keys_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"^send_plaintext=True: needs accept_plaintext"):
        Config.from_env({"SWIM_SECRET_KEYS": B64_16}, send_plaintext=True)
    with pytest.raises(ConfigError, match=r"^secret_keys: key 1 is 8 bytes") as info:
        Config.from_env({}, secret_keys=[b"12345678"])
    assert "12345678" not in str(info.value)
