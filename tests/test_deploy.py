"""The files of ``deploy/``, checked without Docker or Kubernetes.

What can be checked here is: the manifests parse; every ``SWIM_*`` name in
them is a setting; the configuration each container ends up with (the
image's environment, the file's, the value a runtime computes, the command
line) is one ``trio-swim run`` accepts, and says the same ports as the
exposed ones, the probes and the Service; compose's shell line, run by a real
``/bin/sh`` with a stand-in ``hostname``, exports the address it should.
"""

from __future__ import annotations

import base64
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from trio_swim.addresses import split_address
from trio_swim.cli import build_parser, run_config
from trio_swim.config import Config, check_env_variables, env_variable

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
ROOT = DEPLOY.parent
# Values a runtime fills in, for the checks.
CONTAINER_IP = "172.20.0.5"
POD_IP = "10.244.1.7"
SECRET_KEY = base64.b64encode(bytes(range(32))).decode()

Instruction = tuple[str, str]


def dockerfile_instructions(text: str) -> list[Instruction]:
    """``(INSTRUCTION, arguments)`` of each instruction, continuation lines joined."""
    instructions: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += stripped
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip() + " "
            continue
        word, _, arguments = pending.partition(" ")
        instructions.append((word.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def _arguments(instructions: list[Instruction], word: str) -> list[str]:
    return [arguments for name, arguments in instructions if name == word]


def _exec_form(instructions: list[Instruction], word: str) -> list[str]:
    (arguments,) = _arguments(instructions, word)
    value = json.loads(arguments)
    assert isinstance(value, list), f"{word} is not in exec (JSON) form"
    assert all(isinstance(item, str) for item in value)
    return value


def image_environment(instructions: list[Instruction]) -> dict[str, str]:
    """The variables the ``ENV`` instructions set (``KEY=value`` form)."""
    environment: dict[str, str] = {}
    for arguments in _arguments(instructions, "ENV"):
        for word in shlex.split(arguments):
            name, equals, value = word.partition("=")
            assert equals, f"ENV {arguments!r}: use the KEY=value form"
            environment[name] = value
    return environment


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    """deploy/Dockerfile's instructions."""
    return dockerfile_instructions((DEPLOY / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def image_env(dockerfile: list[Instruction]) -> dict[str, str]:
    """The environment of a container made from the image."""
    return image_environment(dockerfile)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """deploy/compose.yaml."""
    document: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return document


@pytest.fixture(scope="module")
def kubernetes() -> dict[str, dict[str, Any]]:
    """deploy/kubernetes.yaml's objects, by kind."""
    documents = list(yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()))
    kinds = [document["kind"] for document in documents]
    assert sorted(kinds) == ["Service", "StatefulSet"]
    return {document["kind"]: document for document in documents}


def listen_port(image_env: dict[str, str]) -> int:
    """The port the image's members listen on."""
    return int(image_env[env_variable("listen_port")])


def exposed(dockerfile: list[Instruction]) -> set[str]:
    """The image's ``EXPOSE`` entries, as ``port/protocol``."""
    entries = " ".join(_arguments(dockerfile, "EXPOSE")).split()
    return {entry if "/" in entry else f"{entry}/tcp" for entry in entries}


def effective_config(
    environment: dict[str, str], entrypoint: list[str], command: list[str]
) -> Config:
    """What ``trio-swim run`` builds from this environment and command line.

    Strict: an unknown ``SWIM_*`` variable fails, as with ``--strict-env``.
    """
    assert entrypoint[:2] == ["trio-swim", "run"], entrypoint
    check_env_variables(environment)
    arguments = build_parser().parse_args([*entrypoint[1:], *command])
    return run_config(arguments, environment)


def http_port(config: Config) -> int:
    """The status endpoint's port; fails if the endpoint is off."""
    assert config.http_address, "the status endpoint is off: no readiness check possible"
    return split_address(config.http_address)[1]


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_installs_the_repository_and_runs_the_console_script(
    dockerfile: list[Instruction],
) -> None:
    (base,) = _arguments(dockerfile, "FROM")
    assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", base), base

    copied = [shlex.split(arguments)[:-1] for arguments in _arguments(dockerfile, "COPY")]
    sources = {source for sources in copied for source in sources}
    assert {"pyproject.toml", "README.md", "trio_swim"} <= sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
    assert any("pip install" in arguments for arguments in _arguments(dockerfile, "RUN"))

    (script,) = [
        entry
        for entry in importlib.metadata.distribution("trio_swim").entry_points
        if entry.group == "console_scripts"
    ]
    entrypoint = _exec_form(dockerfile, "ENTRYPOINT")
    assert entrypoint == [script.name, "run"]
    assert script.value == "trio_swim.cli:main"


def test_dockerfile_runs_as_a_numeric_non_root_user(dockerfile: list[Instruction]) -> None:
    (user,) = _arguments(dockerfile, "USER")
    uid = user.partition(":")[0]
    assert uid.isdigit(), "a name cannot be checked by runAsNonRoot"
    assert int(uid) != 0


def test_dockerfile_exposes_udp_and_tcp_on_the_listen_port(
    dockerfile: list[Instruction], image_env: dict[str, str]
) -> None:
    port = listen_port(image_env)
    assert {f"{port}/udp", f"{port}/tcp"} <= exposed(dockerfile)
    # The image alone is not a valid member: it binds the wildcard and says
    # nothing about where it is reached, which the deployment must add.
    assert image_env[env_variable("listen_ip")] == "0.0.0.0"
    entrypoint, command = _exec_form(dockerfile, "ENTRYPOINT"), _exec_form(dockerfile, "CMD")
    with pytest.raises(ValueError, match="SWIM_ADVERTISE_ADDRESS"):
        effective_config(image_env, entrypoint, command)
    # As `docker run -e SWIM_ADVERTISE_ADDRESS=...` starts it.
    advertised = {env_variable("advertise_address"): f"192.0.2.10:{port}"}
    config = effective_config(image_env | advertised, entrypoint, command)
    assert (config.listen_ip, config.listen_port) == ("0.0.0.0", port)


def test_dockerignore_keeps_what_the_dockerfile_copies(dockerfile: list[Instruction]) -> None:
    lines = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*"
    kept = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    for arguments in _arguments(dockerfile, "COPY"):
        for source in shlex.split(arguments)[:-1]:
            assert source.rstrip("/") in kept, f"{source} is excluded from the build context"


# ------------------------------------------------------------ every SWIM_* name


def test_every_swim_variable_named_in_deploy_is_a_setting() -> None:
    known = {env_variable(field) for field in Config.__struct_fields__}
    named: set[str] = set()
    for path in DEPLOY.iterdir():
        named |= set(re.findall(r"\bSWIM_[A-Z0-9_]+\b", path.read_text()))
    assert named, "no SWIM_* variable found"
    assert named <= known, sorted(named - known)


# ------------------------------------------------------------------ compose


def _compose_text(value: str) -> str:
    """A compose string after compose's own interpolation: ``$$`` is ``$``."""
    assert "$" not in value.replace("$$", ""), f"{value!r}: compose would substitute its $"
    return value.replace("$$", "$")


def _run_entrypoint(entrypoint: list[str], tmp_path: Path) -> dict[str, Any]:
    """Run compose's entry point with stand-ins for ``hostname`` and ``trio-swim``.

    Returns what the stand-in ``trio-swim`` was started with: its arguments
    and the ``SWIM_*`` variables it saw.
    """
    if shutil.which(entrypoint[0]) is None:
        pytest.skip(f"{entrypoint[0]} is not installed")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    hostname = bin_dir / "hostname"
    # As Docker's /etc/hosts has it, with an IPv6 address after the IPv4 one.
    hostname.write_text(
        f'#!/bin/sh\n[ "$1" = -i ] && echo "{CONTAINER_IP} fd00:db8::5" && exit 0\nexit 1\n'
    )
    report = tmp_path / "started.json"
    trio_swim = bin_dir / "trio-swim"
    trio_swim.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"with open({str(report)!r}, 'w') as file:\n"
        "    env = {k: v for k, v in os.environ.items() if k.startswith('SWIM_')}\n"
        "    json.dump({'argv': sys.argv[1:], 'env': env}, file)\n"
    )
    for script in (hostname, trio_swim):
        script.chmod(0o755)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SWIM_")}
    environment["PATH"] = f"{bin_dir}{os.pathsep}{environment.get('PATH', '/usr/bin:/bin')}"
    done = subprocess.run(
        entrypoint, env=environment, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    started: dict[str, Any] = json.loads(report.read_text())
    return started


def test_compose_runs_five_members_that_advertise_their_own_address(
    compose: dict[str, Any],
    dockerfile: list[Instruction],
    image_env: dict[str, str],
    tmp_path: Path,
) -> None:
    (name, service), *others = compose["services"].items()
    assert not others
    assert service["deploy"]["replicas"] == 5
    assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()

    environment = {key: _compose_text(str(value)) for key, value in service["environment"].items()}
    # The one seed is the service's own name, which resolves to every replica.
    assert environment[env_variable("initial_hosts")] == name

    entrypoint = [_compose_text(part) for part in service["entrypoint"]]
    started = _run_entrypoint(entrypoint, tmp_path)
    port = listen_port(image_env)
    assert started["env"] == {env_variable("advertise_address"): f"{CONTAINER_IP}:{port}"}
    assert started["argv"][0] == "run"

    config = effective_config(
        image_env | environment | started["env"], ["trio-swim", "run"], started["argv"][1:]
    )
    assert (config.listen_ip, config.listen_port) == ("0.0.0.0", port)
    assert config.advertise_address == f"{CONTAINER_IP}:{port}"
    assert config.initial_hosts == [name]
    assert f"{http_port(config)}/tcp" in exposed(dockerfile)

    health_check = service["healthcheck"]["test"]
    assert health_check[:3] == ["CMD", "python", "-c"]
    (url,) = re.findall(r"http://[^'\"]+", health_check[3])
    parsed = urllib.parse.urlsplit(url)
    assert (parsed.hostname, parsed.port, parsed.path) == (
        "127.0.0.1",
        http_port(config),
        "/health",
    )
    compile(health_check[3], "healthcheck", "exec")


# --------------------------------------------------------------- Kubernetes


def _pod_environment(container: dict[str, Any]) -> dict[str, str]:
    """The container's ``env`` as Kubernetes sets it, with values for the runtime's fields.

    ``$(NAME)`` expands to a variable defined earlier in the list; ``$$`` is ``$``.
    """
    environment: dict[str, str] = {}
    for entry in container["env"]:
        if "value" in entry:

            def expand(match: re.Match[str]) -> str:
                if match.group(0) == "$$":
                    return "$"
                return environment.get(match.group(1), match.group(0))

            value = re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", expand, str(entry["value"]))
        else:
            source = entry["valueFrom"]
            if "fieldRef" in source:
                assert source["fieldRef"]["fieldPath"] == "status.podIP"
                value = POD_IP
            else:
                assert source["secretKeyRef"]["optional"] is True
                value = SECRET_KEY
        assert "$(" not in value, f"{entry['name']}: {value!r} refers to no earlier variable"
        environment[entry["name"]] = value
    return environment


def _container_port(container: dict[str, Any], port: int | str, protocol: str) -> int:
    """The number of a container port, given by number or by name."""
    for entry in container["ports"]:
        if port in (entry["containerPort"], entry.get("name")) and (
            entry.get("protocol", "TCP") == protocol
        ):
            number: int = entry["containerPort"]
            return number
    raise AssertionError(f"no container port {port!r} over {protocol}")


def test_kubernetes_statefulset_behind_a_headless_service(
    kubernetes: dict[str, dict[str, Any]],
    dockerfile: list[Instruction],
    image_env: dict[str, str],
    compose: dict[str, Any],
) -> None:
    service, stateful_set = kubernetes["Service"], kubernetes["StatefulSet"]
    spec = stateful_set["spec"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert spec["serviceName"] == service["metadata"]["name"]
    assert spec["replicas"] == 5
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()

    (container,) = spec["template"]["spec"]["containers"]
    (compose_service,) = compose["services"].values()
    assert container["image"] == compose_service["image"]
    assert "command" not in container, "the image's entry point must stay"

    environment = _pod_environment(container)
    config = effective_config(
        image_env | environment, _exec_form(dockerfile, "ENTRYPOINT"), container["args"]
    )
    port = listen_port(image_env)
    assert config.advertise_address == f"{POD_IP}:{port}"
    assert (config.listen_ip, config.listen_port) == ("0.0.0.0", port)
    assert config.initial_hosts == [service["metadata"]["name"]]
    assert config.secret_keys == [base64.b64decode(SECRET_KEY)]

    # Gossip on one port over UDP and TCP: in the pod, in the Service, in the image.
    for protocol in ("UDP", "TCP"):
        assert _container_port(container, port, protocol) == port
        assert f"{port}/{protocol.lower()}" in exposed(dockerfile)
        (entry,) = [p for p in service["spec"]["ports"] if p["protocol"] == protocol]
        assert entry["port"] == port
        assert _container_port(container, entry.get("targetPort", port), protocol) == port

    status_port = http_port(config)
    assert f"{status_port}/tcp" in exposed(dockerfile)
    for probe in ("readinessProbe", "livenessProbe"):
        request = container[probe]["httpGet"]
        assert request["path"] == "/health"
        assert _container_port(container, request["port"], "TCP") == status_port


# ------------------------------------------------------------------ the guide


def test_deploy_readme_covers_each_file() -> None:
    guide = (DEPLOY / "README.md").read_text()
    for path in DEPLOY.iterdir():
        if path.name != "README.md":
            assert path.name in guide, f"deploy/README.md does not mention {path.name}"
