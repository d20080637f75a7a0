"""Config defaults and validation."""

from __future__ import annotations

import pytest

from trio_swim import Config, ConfigError


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
