"""Developer and CI sessions: `python -m nox` runs tests, lint, typecheck and docs.

Each session installs the project with pip into its own virtual environment, so
`.ci/run` and a contributor's machine run exactly the same commands.
"""

import os
import pathlib
import shutil

import nox


nox.options.default_venv_backend = "venv"  # uv may not be installed
nox.options.sessions = ["tests", "lint", "typecheck", "docs"]

ROOT = pathlib.Path(__file__).parent
KATEX_VERSION = "0.16"
KATEX_VENDOR = ROOT / "docs" / "_static" / "vendor" / "katex"


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite, one worker per CPU core (pytest-xdist); extra
    arguments go to pytest and replace `-n auto`."""
    # `plots` too, so the tests of the demo command can draw its figures.
    session.install("-e", ".[test,plots]")
    # Most tests are bound by Python dispatch and compilation, one core each:
    # on two cores, two workers halve the wall time.
    session.run("pytest", *(session.posargs or ["-n", "auto"]))


@nox.session
def lint(session: nox.Session) -> None:
    """Check formatting and lint rules with ruff."""
    session.install("-e", ".[lint]")
    session.run("ruff", "format", "--check", ".")
    session.run("ruff", "check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check `src` with pyright (configured in pyproject.toml)."""
    # Every optional extra too, so pyright resolves matplotlib, scikit-learn and
    # Hypothesis (scorax.testing).
    session.install("-e", ".[lint,plots,data,testing]")
    session.run("pyright", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site, with KaTeX served from the site itself, and
    check in headless Chromium that its maths renders.

    Needs npm (for KaTeX) and Chromium. Where either is missing, the session
    installs Debian's package when it runs as root with apt-get (as CI does), and
    otherwise stops with the command to run: no check is skipped."""
    npm = _system_tool(
        session,
        ("npm",),
        packages=("npm",),
        purpose="npm (Node.js), to install KaTeX so that maths renders offline",
    )
    browser = _system_tool(
        session,
        CHROMIUM,
        packages=("chromium",),
        purpose="Chromium, to check in a headless browser that the maths renders",
    )
    # `lint` brings ruff, which mkdocstrings uses to format separate signatures.
    session.install("-e", ".[docs,lint]")
    prefix = pathlib.Path(session.create_tmp()) / "npm"
    session.run(
        npm,
        "install",
        "--no-save",
        "--no-audit",
        "--no-fund",
        "--ignore-scripts",
        "--prefix",
        str(prefix),
        f"katex@{KATEX_VERSION}",
        external=True,
    )
    _vendor_katex(prefix / "node_modules" / "katex" / "dist", KATEX_VENDOR)
    # Material for MkDocs prints a banner about MkDocs 2.0 on every build.
    env = {"NO_MKDOCS_2_WARNING": "1"}
    session.run("mkdocs", "build", "--strict", *session.posargs, env=env)
    # Open the built pages in headless Chromium: the maths must have rendered
    # (screenshots land in site/_screenshots/ for a person to look at).
    session.run("python", "docs/_tools/check_render.py", "site", "--browser", browser)


# The names Chromium goes by (Debian's package installs `chromium`).
CHROMIUM = ("chromium", "chromium-browser", "google-chrome", "chrome")


def _system_tool(
    session: nox.Session,
    names: tuple[str, ...],
    *,
    packages: tuple[str, ...],
    purpose: str,
) -> str:
    """The path of the first of `names` found on PATH. When none is, install
    Debian's `packages` if this runs as root with apt-get (as CI does), else stop
    with the one command that installs them."""
    found = _which(names)
    if found is not None:
        return found
    install = ("apt-get", "install", "-y", "-q", "--no-install-recommends", *packages)
    is_root = getattr(os, "geteuid", lambda: -1)() == 0
    if not is_root or shutil.which("apt-get") is None:
        command = f"sudo apt-get update && sudo {' '.join(install)}"
        session.error(
            f"The docs session needs {purpose}, and found none of {', '.join(names)} "
            f"on PATH. Install it (Debian or Ubuntu: `{command}`) and run it again."
        )
    session.log(f"None of {', '.join(names)} found: installing Debian's {packages}.")
    apt_env = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run("apt-get", "update", "-q", env=apt_env, external=True)
    session.run(*install, env=apt_env, external=True)
    found = _which(names)
    if found is None:
        session.error(f"Installed Debian's {packages}, still found none of {names}.")
    return found


def _which(names: tuple[str, ...]) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found is not None:
            return found
    return None


def _vendor_katex(dist: pathlib.Path, vendor: pathlib.Path) -> None:
    """Copy the KaTeX files the site loads from `dist` into `vendor`."""
    shutil.rmtree(vendor, ignore_errors=True)
    (vendor / "contrib").mkdir(parents=True)
    for name in ("katex.min.js", "katex.min.css", "contrib/auto-render.min.js"):
        shutil.copyfile(dist / name, vendor / name)
    shutil.copytree(dist / "fonts", vendor / "fonts")


@nox.session
def benchmarks(session: nox.Session) -> None:
    """Run the benchmarks; extra arguments go to `python -m benchmarks`."""
    session.install(".")
    session.run("python", "-m", "benchmarks", *session.posargs)
