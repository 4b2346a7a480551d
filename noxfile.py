"""Developer and CI sessions: `python -m nox` runs tests, lint, typecheck and docs.

Each session installs the project with pip into its own virtual environment, so
`.ci/run` and a contributor's machine run exactly the same commands.
"""

import os
import pathlib
import shutil
import tarfile
import zipfile

import nox


nox.options.default_venv_backend = "venv"  # uv may not be installed
nox.options.sessions = ["tests", "lint", "typecheck", "docs", "wheel"]

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
    # on two cores, two workers halve the wall time. Work stealing keeps both
    # busy to the end (a long test left to one worker otherwise sets the time);
    # the slowest tests are listed, to keep an eye on the suite's time.
    default = ["-n", "auto", "--dist", "worksteal", "--durations", "15"]
    session.run("pytest", *(session.posargs or default))


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


# What the installed wheel runs, from outside the source tree: the testing kit's
# strategies and checks on the exact oracle, as a user's test would call them.
TESTING_SMOKE = """
import pathlib
import jax.random as jr
from hypothesis import given, settings
import scorax, scorax.testing
assert "site-packages" in pathlib.Path(scorax.__file__).parts, scorax.__file__

@settings(max_examples=5, deadline=None)
@given(path=scorax.testing.gaussian_paths())
def test_paths(path):
    scorax.testing.check_path(path)
    scorax.testing.check_parameterisation_roundtrip(path)

test_paths()
path = scorax.VPPath()
mixture = scorax.datasets.gaussian_mixture()
sampler = scorax.get_sampler("dpm2m", path)
start = path.prior_sample(key=jr.key(0), shape=(500, 2))
# get_sampler reads the model as noise, as diffusion_loss trains it by default.
model = scorax.testing.ExactModel(mixture, path, parameterisation=scorax.NoisePrediction())
scorax.testing.check_sampler(sampler, model, start, mixture, key=jr.key(1))
print("scorax", scorax.__version__, "from", scorax.__file__, ": testing kit works")
"""


@nox.session
def wheel(session: nox.Session) -> None:
    """Build the sdist and the wheel as a release would, check their metadata, and
    use the wheel as a user gets it: installed (with the `testing` extra) into
    this session's fresh environment and run from outside the source tree, so
    nothing is imported from `src/`. Runs the quickstart, a short
    `scorax demo` and a smoke test of `scorax.testing`."""
    session.install("build>=1.2", "twine>=6.1")  # metadata 2.4 (PEP 639)
    dist = pathlib.Path(session.create_tmp()) / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(dist), str(ROOT))
    artefacts = sorted(str(p) for p in dist.iterdir())
    session.run("twine", "check", "--strict", *artefacts)
    _check_artefacts(session, artefacts)
    (wheel_file,) = dist.glob("*.whl")
    session.install(f"{wheel_file}[testing]")
    elsewhere = pathlib.Path(session.create_tmp()) / "user"
    elsewhere.mkdir(exist_ok=True)
    session.chdir(elsewhere)
    session.run("python", "-c", TESTING_SMOKE)
    session.run("python", str(ROOT / "examples" / "quickstart.py"))
    session.run(
        "scorax", "demo", "--steps", "200", "--samples", "256", "--output", "demo"
    )


def _check_artefacts(session: nox.Session, artefacts: list[str]) -> None:
    """Both artefacts carry the licence text; the wheel carries the package with
    its `py.typed` marker and the licence in its metadata, and nothing of the
    development tree (tests, benchmarks)."""
    problems = []
    for artefact in artefacts:
        if artefact.endswith(".whl"):
            with zipfile.ZipFile(artefact) as archive:
                names = archive.namelist()
                metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
                text = archive.read(metadata).decode()
            if "License-Expression: Apache-2.0" not in text:
                problems.append(f"{artefact}: no License-Expression in its METADATA")
            for wanted in ("scorax/__init__.py", "scorax/py.typed"):
                if wanted not in names:
                    problems.append(f"{artefact}: no {wanted}")
            leaked = [n for n in names if n.startswith(("tests/", "benchmarks/"))]
            if leaked:
                problems.append(f"{artefact}: holds {leaked[:3]}")
        else:
            with tarfile.open(artefact) as archive:
                names = archive.getnames()
        if not any(name.rsplit("/", 1)[-1] == "LICENSE" for name in names):
            problems.append(f"{artefact}: no LICENSE")
    if problems:
        session.error("\n".join(problems))
    session.log(
        f"Checked {len(artefacts)} artefacts: licence, package files, metadata."
    )


@nox.session
def mutation(session: nox.Session) -> None:
    """Run the curated mutants of the core formula modules (mutation/mutants.py)
    against the tests that cover them, and write mutation/report.md and
    mutation/results.json. Not run by default (about an hour on two cores);
    extra arguments go to mutation/run.py, e.g. `-- --module trace` to re-run one
    module, `-- --report-only` or `-- --check`."""
    session.install("-e", ".[test]")
    session.run("python", "mutation/run.py", *session.posargs)


@nox.session
def benchmarks(session: nox.Session) -> None:
    """Run the benchmarks; extra arguments go to `python -m benchmarks`."""
    session.install(".")
    session.run("python", "-m", "benchmarks", *session.posargs)
