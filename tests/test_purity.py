"""The protocol core stays sans-I/O: no clock, no randomness, no sockets, no trio.

Read from the source (AST), not from ``sys.modules``: starting at
``trio_swim/protocol.py``, every ``trio_swim`` module it imports at runtime is
followed (relative and absolute imports, transitively; imports under
``if TYPE_CHECKING:`` do not count, imports inside functions do), and none of
them may import a forbidden module. ``statistics`` is forbidden too: it
imports ``random``.

(Importing ``trio_swim.protocol`` still runs ``trio_swim/__init__.py``, which
imports the trio runner; what is checked is that the core's own modules never
need it.)
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "trio_swim"
NAME = "trio_swim"
START = f"{NAME}.protocol"
FORBIDDEN = frozenset(
    {"trio", "time", "random", "socket", "asyncio", "threading", "selectors", "statistics"}
)
# What protocol.py is built on today; the walk must at least reach these.
CORE = {
    f"{NAME}.{m}"
    for m in (
        "protocol",
        "addresses",
        "config",
        "dissemination",
        "events",
        "membership",
        "suspicion",
        "timers",
        "wire",
    )
}


def module_file(package: Path, module: str) -> Path | None:
    """The source file of ``trio_swim.x.y`` inside ``package``, if there is one."""
    parts = module.split(".")[1:]
    base = package.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if parts and candidate.is_file():
            return candidate
    if not parts:
        return package / "__init__.py"
    return None


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_nodes(tree: ast.Module) -> list[ast.AST]:
    """Every node that can run at import or call time (``if TYPE_CHECKING:``
    bodies left out, their ``else`` kept)."""
    nodes: list[ast.AST] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        nodes.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return nodes


def imports_of(package: Path, module: str) -> tuple[set[str], set[str]]:
    """(top-level outside modules, ``trio_swim`` modules) that ``module`` imports."""
    path = module_file(package, module)
    assert path is not None, module
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    own_package = module if is_package else module.rpartition(".")[0]
    outside: set[str] = set()
    inside: set[str] = set()

    def add(name: str) -> None:
        if name.split(".")[0] == NAME:
            inside.add(name)
        else:
            outside.add(name.split(".")[0])

    for node in runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = own_package.split(".")
                assert node.level <= len(base), f"{module}: import beyond {NAME}"
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                assert node.module is not None
                target = node.module
            if target.split(".")[0] != NAME:
                add(target)
                continue
            for alias in node.names:
                # `from . import wire` imports the module wire; `from .wire
                # import Ack` (or `from . import Config`) the module named.
                submodule = f"{target}.{alias.name}"
                found = module_file(package, submodule) is not None
                inside.add(submodule if found else target)
        elif isinstance(node, ast.Call) and node.args:
            # __import__("time"), importlib.import_module("time")
            func = node.func
            dynamic = (isinstance(func, ast.Name) and func.id == "__import__") or (
                isinstance(func, ast.Attribute) and func.attr == "import_module"
            )
            first = node.args[0]
            if dynamic and isinstance(first, ast.Constant) and isinstance(first.value, str):
                add(first.value)
    return outside, inside


def closure(package: Path, start: str = START) -> dict[str, set[str]]:
    """Every ``trio_swim`` module reached from ``start``, with its outside imports."""
    found: dict[str, set[str]] = {}
    todo = [start]
    while todo:
        module = todo.pop()
        if module in found:
            continue
        outside, inside = imports_of(package, module)
        found[module] = outside
        todo.extend(inside)
    return found


def forbidden_imports(package: Path) -> dict[str, list[str]]:
    return {
        module: sorted(outside & FORBIDDEN)
        for module, outside in sorted(closure(package).items())
        if outside & FORBIDDEN
    }


def test_the_protocol_core_imports_no_clock_randomness_sockets_or_trio() -> None:
    reached = closure(PACKAGE)
    assert set(reached) >= CORE
    assert f"{NAME}.member" not in reached  # the trio runner is not part of the core
    assert forbidden_imports(PACKAGE) == {}


# ------------------------------------------------- the check itself can fail


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """A copy of the package's sources to break."""
    copy = tmp_path / NAME
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + "\n" + text + "\n")


@pytest.mark.parametrize(
    ("file", "code", "found"),
    [
        ("protocol.py", "import time", ["time"]),
        ("protocol.py", "from random import Random", ["random"]),
        ("protocol.py", "import trio.lowlevel", ["trio"]),
        ("suspicion.py", "import time", ["time"]),
        ("wire.py", "import statistics", ["statistics"]),
        ("timers.py", "def later():\n    import socket\n    return socket", ["socket"]),
        ("membership.py", "import asyncio, threading", ["asyncio", "threading"]),
        ("dissemination.py", "selectors = __import__('selectors')", ["selectors"]),
        ("addresses.py", "import importlib\nimportlib.import_module('time')", ["time"]),
        ("config.py", "if True:\n    import time", ["time"]),
        (
            "events.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    pass\nelse:\n    import time",
            ["time"],
        ),
    ],
)
def test_a_forbidden_import_anywhere_in_the_core_is_found(
    package: Path, file: str, code: str, found: list[str]
) -> None:
    assert forbidden_imports(package) == {}
    append(package / file, code)
    assert forbidden_imports(package) == {f"{NAME}.{file.removesuffix('.py')}": found}


def test_a_new_module_reached_from_the_core_is_checked_too(package: Path) -> None:
    (package / "clock.py").write_text("import time\n")
    append(package / "wire.py", "from . import clock")
    assert forbidden_imports(package) == {f"{NAME}.clock": ["time"]}
    (package / "clock.py").write_text("import random\n")
    append(package / "protocol.py", "from trio_swim.clock import now")
    assert forbidden_imports(package) == {f"{NAME}.clock": ["random"]}


def test_type_checking_imports_and_modules_outside_the_core_do_not_count(
    package: Path,
) -> None:
    append(package / "protocol.py", "if TYPE_CHECKING:\n    import trio\n    import time")
    append(package / "membership.py", "import typing\nif typing.TYPE_CHECKING:\n    import socket")
    append(package / "member.py", "import time")  # the runner may use anything
    assert forbidden_imports(package) == {}


def test_importing_from_the_package_itself_pulls_in_the_runner(package: Path) -> None:
    # `from trio_swim import Config` needs trio_swim/__init__.py, which
    # imports the trio runner: that is an import of trio.
    append(package / "events.py", "from trio_swim import Config")
    assert "trio" in forbidden_imports(package)[f"{NAME}.member"]
