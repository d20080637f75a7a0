"""Sessions: tests, lint, typecheck, bench (run ``nox -l`` to list them)."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.default_venv_backend = "venv"

PYTHON = None  # the interpreter nox itself runs on


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and format check."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package, tests and benchmarks."""
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict")


# The quick run (``nox -s bench``): a few scripts with small settings, each
# writing its JSON into the session's temporary directory (so the committed
# results stay as they are), and the plots drawn from there. Only scripts with
# an ``--output`` option can take part. ``nox -s bench -- --full`` runs every
# script in benchmarks/ with its default settings (``--full`` where the default
# is the quick one), writing the results beside the scripts, then plot.py.
QUICK_BENCHMARKS = {
    "codec.py": ["--quick"],
    "heal.py": ["--sizes", "20", "100"],
    "receive_path.py": ["--seconds", "1", "--variant", "plain"],
    "join_state.py": ["--quick"],
    "papers.py": ["--quick"],
}
FULL_ARGUMENTS = {"codec.py": ["--full"], "papers.py": ["--full"]}


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run the quick benchmarks, or every one with ``-- --full``; then draw the plots."""
    from pathlib import Path

    session.install("-e", ".[bench]")
    unknown = [a for a in session.posargs if a != "--full"]
    if unknown:
        session.error(f"unknown arguments {unknown}: the only one is --full")
    here = Path("benchmarks")
    if "--full" in session.posargs:
        scripts = sorted(p.name for p in here.glob("*.py") if not p.name.startswith("_"))
        for name in scripts:
            if name != "plot.py":
                session.run("python", str(here / name), *FULL_ARGUMENTS.get(name, []))
        session.run("python", str(here / "plot.py"))
        return
    results = Path(session.create_tmp())
    for name, arguments in QUICK_BENCHMARKS.items():
        output = results / Path(name).with_suffix(".json")
        session.run("python", str(here / name), *arguments, "--output", str(output))
    session.run(
        "python", str(here / "plot.py"), "--data", str(results), "--output", str(results / "plots")
    )
    session.log(f"quick results and plots in {results}")
