"""Config defaults and validation."""

from __future__ import annotations

import base64
import re

import pytest

from trio_swim import Config, ConfigError
from trio_swim.config import env_variable

KEY_16 = bytes(range(16))
KEY_24 = bytes(range(32, 56))
KEY_32 = bytes(range(64, 96))


def test_defaults_follow_smudge() -> None:
    cfg = Config()
    assert (cfg.listen_ip, cfg.listen_port) == ("127.0.0.1", 9999)
    assert cfg.heartbeat_millis == 250
    assert cfg.max_broadcast_bytes == 256
    assert cfg.multicast_port == 9998
    assert cfg.indirect_checks == 3
    assert cfg.retransmit_mult == 4
    assert cfg.max_packet_bytes == 1400
    assert cfg.period == 0.25


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"listen_port": 70000}, "listen_port=70000: must be 0..65535"),
        ({"listen_port": "9999"}, "listen_port='9999': must be int"),
        ({"heartbeat_millis": 0}, "heartbeat_millis=0"),
        ({"listen_ip": "nowhere"}, "listen_ip='nowhere'"),
        ({"listen_ip": "0.0.0.0"}, "listen_ip='0.0.0.0'"),
        ({"initial_hosts": ["a:b"]}, "initial_hosts=['a:b']"),
        ({"initial_hosts": "a:1"}, "initial_hosts='a:1'"),
        ({"cluster_name": ""}, "cluster_name=''"),
        ({"multicast_address": "10.0.0.1"}, "multicast_address='10.0.0.1'"),
        ({"lifeguard": 1}, "lifeguard=1: must be bool"),
        ({"max_broadcast_bytes": 1300}, "max_broadcast_bytes=1300"),
        ({"sync_interval_seconds": float("nan")}, "sync_interval_seconds=nan"),
    ],
)
def test_bad_values_name_the_setting(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Config(**settings)  # type: ignore[arg-type]


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(TypeError):
        Config(listen_prot=1)  # type: ignore[call-arg]


def test_probe_timeout_is_capped_at_half_a_period() -> None:
    short = Config(heartbeat_millis=100)
    assert short.probe_timeout == 0.05
    assert short.min_probe_timeout == 0.01
    tiny = Config(heartbeat_millis=10)
    assert (tiny.probe_timeout, tiny.min_probe_timeout) == (0.005, 0.005)
    assert Config().probe_timeout == 0.1
    assert Config(probe_timeout_millis=5).min_probe_timeout == 0.005


def test_secret_keys_and_plaintext_switches() -> None:
    cfg = Config()
    assert (cfg.secret_keys, cfg.accept_plaintext, cfg.send_plaintext) == ([], False, False)
    keyed = Config(secret_keys=[KEY_16, KEY_24, KEY_32])
    assert keyed.secret_keys == [KEY_16, KEY_24, KEY_32]
    accepting = Config(secret_keys=[KEY_16], accept_plaintext=True)
    assert (accepting.accept_plaintext, accepting.send_plaintext) == (True, False)
    both = Config(secret_keys=[KEY_16], accept_plaintext=True, send_plaintext=True)
    assert (both.accept_plaintext, both.send_plaintext) == (True, True)
    assert len(Config(secret_keys=[bytes([i]) * 16 for i in range(16)]).secret_keys) == 16


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"secret_keys": [b"\x01" * 20]}, "secret_keys: key 1 is 20 bytes: must be 16, 24 or 32"),
        (
            {"secret_keys": [KEY_16, KEY_32, b""]},
            "secret_keys: key 3 is 0 bytes: must be 16, 24 or 32",
        ),
        ({"secret_keys": [KEY_16, KEY_24, KEY_16]}, "secret_keys: key 3 repeats key 1"),
        (
            {"secret_keys": [bytes([i]) * 16 for i in range(17)]},
            "secret_keys: 17 keys: at most 16 "
            "(each received packet may be tried against every key)",
        ),
        (
            {"secret_keys": [base64.b64encode(KEY_16).decode()]},
            "secret_keys: must be a list of bytes",
        ),
        ({"secret_keys": [bytearray(KEY_16)]}, "secret_keys: must be a list of bytes"),
        ({"secret_keys": KEY_16}, "secret_keys: must be a list of bytes"),
        (
            {"accept_plaintext": True},
            "accept_plaintext=True: needs secret_keys (without keys every packet is plaintext)",
        ),
        (
            {"send_plaintext": True, "accept_plaintext": True},
            "accept_plaintext=True: needs secret_keys",
        ),
        (
            {"secret_keys": [KEY_16], "send_plaintext": True},
            "send_plaintext=True: needs accept_plaintext "
            "(members that send plaintext must accept it too)",
        ),
        (
            {"secret_keys": [KEY_16], "accept_plaintext": "yes"},
            "accept_plaintext='yes': must be bool",
        ),
        (
            {"secret_keys": [KEY_16], "max_broadcast_bytes": 1200},
            "max_broadcast_bytes=1200: must leave 229 bytes of max_packet_bytes (1400) "
            "when packets are sealed",
        ),
    ],
)
def test_bad_security_settings_name_the_setting(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}") as construct:
        Config(**settings)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}") as from_env:
        Config.from_env({}, **settings)
    for error in (construct.value, from_env.value):
        for key in (KEY_16, KEY_24, KEY_32):
            assert repr(key)[2:-1] not in str(error)
            assert base64.b64encode(key).decode() not in str(error)


def test_sealing_takes_its_overhead_from_the_broadcast_room() -> None:
    assert Config(max_broadcast_bytes=1200).max_broadcast_bytes == 1200
    assert Config(secret_keys=[KEY_16], max_broadcast_bytes=1171).max_broadcast_bytes == 1171
    with pytest.raises(ConfigError, match=r"^max_broadcast_bytes=1172: must leave 229 bytes"):
        Config(secret_keys=[KEY_16], max_broadcast_bytes=1172)


def test_the_repr_shows_keys_as_the_docstring_warns() -> None:
    # msgspec writes every field in the repr; the field's docstring says so.
    assert repr(KEY_16) in repr(Config(secret_keys=[KEY_16]))
    assert env_variable("secret_keys") == "SWIM_SECRET_KEYS"
