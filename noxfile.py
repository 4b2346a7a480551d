"""Developer and CI sessions: `python -m nox` runs tests, lint and typecheck.

Each session installs the project with pip into its own virtual environment, so
`.ci/run` and a contributor's machine run exactly the same commands.
"""

import pathlib
import shutil

import nox


nox.options.default_venv_backend = "venv"  # uv may not be installed
nox.options.sessions = ["tests", "lint", "typecheck"]

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
    check in headless Chromium that its maths renders (needs npm and Chromium)."""
    npm = shutil.which("npm")
    if npm is None:
        session.error(
            "The docs session needs npm (Node.js) to install KaTeX from the npm "
            "registry, so that maths renders offline; install Node.js and retry"
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
    session.run("python", "docs/_tools/check_render.py", "site")


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
