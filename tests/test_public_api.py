"""The public surface: names, docstrings, typing marker."""

from __future__ import annotations

import inspect
from pathlib import Path

import trio_swim
import trio_swim.protocol
import trio_swim.testing

DOCUMENTED = {
    "AddressError",
    "DeliveryFailed",
    "MessageTooLarge",
    "MetadataTooLarge",
    "BroadcastReceived",
    "BroadcastTooLarge",
    "Config",
    "ConfigError",
    "Event",
    "EventStream",
    "EventsMissed",
    "Keyring",
    "Member",
    "MemberRemoved",
    "MemberStatistics",
    "MessageReceived",
    "MetadataChanged",
    "Node",
    "Status",
    "StatusChanged",
    "open_member",
}


def test_all_matches_the_documented_names() -> None:
    assert set(trio_swim.__all__) == DOCUMENTED
    for name in DOCUMENTED:
        assert hasattr(trio_swim, name)


def test_every_public_name_has_a_docstring() -> None:
    for name in DOCUMENTED - {"Event"}:
        obj = getattr(trio_swim, name)
        assert inspect.getdoc(obj), name
        if inspect.isclass(obj):
            for attr, value in vars(obj).items():
                if not attr.startswith("_") and callable(value):
                    assert inspect.getdoc(value), f"{name}.{attr}"
    assert inspect.getdoc(trio_swim.testing.SimNetwork)
    assert inspect.getdoc(trio_swim.testing.Simulation)
    assert inspect.getdoc(trio_swim.protocol.Swim)


def test_package_is_typed() -> None:
    assert (Path(trio_swim.__file__).parent / "py.typed").exists()


def test_readme_names_exist() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for name in ("open_member", "events()", "broadcast", "SimNetwork"):
        assert name in readme
