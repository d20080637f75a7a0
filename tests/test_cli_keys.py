"""``trio-swim run --key-file`` and the plaintext switches: parsing, precedence, errors."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from trio_swim.cli import build_parser, main, run_config

KEY_16 = bytes(range(16))
KEY_24 = bytes(range(40, 64))
KEY_32 = bytes(range(100, 132))
B64 = {key: base64.b64encode(key).decode() for key in (KEY_16, KEY_24, KEY_32)}


@pytest.fixture(autouse=True)
def no_swim_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SWIM_"):
            monkeypatch.delenv(name)


def key_file(tmp_path: Path, text: str | bytes) -> str:
    path = tmp_path / "keys"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


def test_a_key_file_gives_the_keys_primary_first(tmp_path: Path) -> None:
    path = key_file(
        tmp_path,
        f"# rotated 2024-05-01\n\n  {B64[KEY_24]}  \n{B64[KEY_16].rstrip('=')}  # old\n"
        f"\t\n{B64[KEY_32]}\r\n",
    )
    cfg = run_config(build_parser().parse_args(["run", "--key-file", path]), {})
    assert cfg.secret_keys == [KEY_24, KEY_16, KEY_32]
    assert (cfg.accept_plaintext, cfg.send_plaintext) == (False, False)


def test_the_key_file_wins_over_the_variable(tmp_path: Path) -> None:
    env = {"SWIM_SECRET_KEYS": f"{B64[KEY_16]},{B64[KEY_24]}"}
    parser = build_parser()
    path = key_file(tmp_path, B64[KEY_32])
    assert run_config(parser.parse_args(["run", "--key-file", path]), env).secret_keys == [KEY_32]
    assert run_config(parser.parse_args(["run"]), env).secret_keys == [KEY_16, KEY_24]
    bad_env = {"SWIM_SECRET_KEYS": "not base64!"}
    assert run_config(parser.parse_args(["run", "--key-file", path]), bad_env).secret_keys == [
        KEY_32
    ]


def test_plaintext_flags_win_over_the_environment(tmp_path: Path) -> None:
    parser = build_parser()
    path = key_file(tmp_path, B64[KEY_16])
    keyed = {"SWIM_SECRET_KEYS": B64[KEY_16]}

    def switches(argv: list[str], env: dict[str, str]) -> tuple[bool, bool]:
        cfg = run_config(parser.parse_args(["run", *argv]), env)
        return cfg.accept_plaintext, cfg.send_plaintext

    step_1 = ["--key-file", path, "--accept-plaintext", "--send-plaintext"]
    assert switches(step_1, {}) == (True, True)
    assert switches(["--accept-plaintext"], keyed) == (True, False)
    both_on = {**keyed, "SWIM_ACCEPT_PLAINTEXT": "true", "SWIM_SEND_PLAINTEXT": "true"}
    assert switches([], both_on) == (True, True)
    assert switches(["--no-send-plaintext"], both_on) == (True, False)
    assert switches(["--no-send-plaintext", "--no-accept-plaintext"], both_on) == (False, False)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (f"{B64[KEY_16]}\nnot base64!\n", "line 2: not base64"),
        (
            f"# keys\n{base64.b64encode(KEY_32[:20]).decode()}\n",
            "line 2: a key of 20 bytes: must be 16, 24 or 32 bytes",
        ),
        (f"{B64[KEY_16]}\n\n{B64[KEY_24]}\n{B64[KEY_16]}\n", "line 4: the same key as line 1"),
        (
            "".join(base64.b64encode(bytes([i]) * 16).decode() + "\n" for i in range(17)),
            "line 17: more than 16 keys (each received packet may be tried against every key)",
        ),
        ("# nothing but comments\n\n", "no keys"),
        ("", "no keys"),
        (b"\xff\xfe" + B64[KEY_16].encode(), "not a text file"),
        ("A" * 70_000, "more than 65536 bytes: not a key file"),
    ],
)
def test_a_bad_key_file_ends_with_one_line_naming_the_line(
    tmp_path: Path, text: str | bytes, error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = key_file(tmp_path, text)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--key-file", path])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    where = f"{path!r}, " if error.startswith("line") else f"{path!r}: "
    assert captured.err == f"trio-swim run: error: argument --key-file: {where}{error}\n"
    for encoded in B64.values():
        assert encoded.rstrip("=") not in captured.err


def test_a_missing_key_file_ends_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "absent")
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--key-file", path])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert (
        err == f"trio-swim run: error: argument --key-file: {path!r}: No such file or directory\n"
    )


@pytest.mark.parametrize(
    ("argv", "env", "error"),
    [
        (
            ["--accept-plaintext"],
            {},
            "--accept-plaintext=True: needs secret_keys (without keys every packet is plaintext)",
        ),
        (
            ["--send-plaintext"],
            {"SWIM_SECRET_KEYS": B64[KEY_16]},
            "--send-plaintext=True: needs accept_plaintext "
            "(members that send plaintext must accept it too)",
        ),
        (
            ["--send-plaintext", "--key-file", "KEYS"],
            {},
            "--send-plaintext=True: needs accept_plaintext "
            "(members that send plaintext must accept it too)",
        ),
        (
            ["--key-file", "KEYS"],
            {"SWIM_SEND_PLAINTEXT": "1"},
            "SWIM_SEND_PLAINTEXT='1': needs accept_plaintext "
            "(members that send plaintext must accept it too)",
        ),
        (
            [],
            {"SWIM_SECRET_KEYS": f"{B64[KEY_16]},{B64[KEY_16]}"},
            "SWIM_SECRET_KEYS: key 2 repeats key 1",
        ),
    ],
)
def test_bad_combinations_are_one_line_naming_the_flag_or_variable(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
    error: str,
) -> None:
    path = key_file(tmp_path, B64[KEY_24])
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["run", *(path if arg == "KEYS" else arg for arg in argv)]) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", f"trio-swim run: error: {error}\n")


def test_run_help_lists_the_security_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for flag in ("--key-file PATH", "--accept-plaintext", "--no-send-plaintext"):
        assert flag in out
