"""Run the curated mutants of `mutation/mutants.py` and write the report.

For each mutant: copy `src/` to a temporary directory, apply the mutant there
(the real `src/` is never touched), and run the tests that cover its module
with that copy first on `PYTHONPATH`, one process (`-n 0`), stopping at the
first failure (`-x`), with the derandomised Hypothesis profile (`CI=1`). A
guard plugin stops the run unless the mutated module is the one imported. Exit
status 1 of pytest (a test failed) kills the mutant, 0 lets it survive; any
other status, or the time limit, is an error.

    python mutation/run.py                      # every mutant, then the report
    python mutation/run.py --module trace       # one module, merged into results
    python mutation/run.py --name sde-2m-first-order
    python mutation/run.py --report-only        # the report from results.json
    python mutation/run.py --check              # snippets and results current?

Results go to `mutation/results.json` (merged by mutant name, so a subset can
be re-run) and `mutation/report.md`. The exit status is 1 when a mutant
survives without an explanation, errs, or (with --check) is out of date.
"""

import argparse
import datetime
import difflib
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from mutants import CHANGE_DETECTORS, MODULES, Mutant, MUTANTS
from report import check, file_hash, write_report


ROOT = pathlib.Path(__file__).resolve().parent.parent
HERE = ROOT / "mutation"
RESULTS = HERE / "results.json"
REPORT = HERE / "report.md"
# pytest's exit statuses: 0 all passed, 1 some test failed; others are errors
# (2 interrupted or a collection error, 3 internal error or the guard below,
# 4 usage error, 5 no tests collected).
PASSED, FAILED = 0, 1
GUARD = '''"""Stop the session unless the mutated module is imported from the copy."""
import importlib
import os
import pathlib

import pytest


def pytest_sessionstart(session):
    name = os.environ["MUTATION_MODULE"]
    where = pathlib.Path(importlib.import_module(name).__file__).resolve()
    expected = pathlib.Path(os.environ["MUTATION_FILE"]).resolve()
    log = pathlib.Path(os.environ["MUTATION_GUARD_LOG"])
    log.write_text(f"{name} imported from {where}")
    if where != expected:
        pytest.exit(
            f"mutation guard: {name} came from {where}, not from the mutated copy "
            f"{expected}: PYTHONPATH did not take precedence",
            returncode=3,
        )
'''


def occurrences(mutant: Mutant) -> int:
    return (ROOT / mutant.file).read_text().count(mutant.original)


def problems(mutants: tuple[Mutant, ...]) -> list[str]:
    """What is wrong with the list itself: a snippet not found exactly once, a
    repeated name, an unknown module, a mutant that changes nothing."""
    found = []
    names = [m.name for m in mutants]
    for name in sorted({n for n in names if names.count(n) > 1}):
        found.append(f"{name}: the name is used more than once")
    for mutant in mutants:
        if mutant.module not in MODULES:
            found.append(f"{mutant.name}: unknown module {mutant.module!r}")
        if mutant.original == mutant.replacement:
            found.append(f"{mutant.name}: the replacement equals the original")
        if not (ROOT / mutant.file).is_file():
            found.append(f"{mutant.name}: no file {mutant.file}")
            continue
        count = occurrences(mutant)
        if count != 1:
            found.append(
                f"{mutant.name}: the original snippet occurs {count} times in "
                f"{mutant.file} (must be exactly once; update mutation/mutants.py)"
            )
    return found


def git(*args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return result.stdout.rstrip("\n")


def tree_state() -> dict:
    """The commit tested and the paths under src/ and tests/ changed since."""
    dirty = git("status", "--porcelain", "--", "src", "tests").splitlines()
    return {"commit": git("rev-parse", "HEAD"), "uncommitted": sorted(dirty)}


def mutated_copy(mutant: Mutant | None, where: pathlib.Path) -> pathlib.Path:
    """Copy src/ under `where`, apply `mutant` there, write the guard plugin;
    return the copy of the (mutated) file."""
    shutil.copytree(
        ROOT / "src", where / "src", ignore=shutil.ignore_patterns("__pycache__")
    )
    (where / "guard").mkdir()
    (where / "guard" / "_mutation_guard.py").write_text(GUARD)
    if mutant is None:
        return where / "src" / "scorax" / "__init__.py"
    target = where / mutant.file
    text = target.read_text()
    assert text.count(mutant.original) == 1, mutant.name
    target.write_text(text.replace(mutant.original, mutant.replacement))
    return target


def module_name(copy: pathlib.Path, where: pathlib.Path) -> str:
    """The dotted name of `copy`, a file under where/src."""
    parts = list(copy.relative_to(where / "src").with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def split_tests(tests: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The tests whose file exists, and those whose file does not."""
    present, missing = [], []
    for test in tests:
        (present if (ROOT / test.split("::")[0]).exists() else missing).append(test)
    return present, missing


def run_pytest(tests: list[str], where: pathlib.Path, copy: pathlib.Path, timeout):
    """Run pytest on `tests` against the copy: its exit status (None on a
    timeout), its output, what the guard saw (None if it did not run) and the
    time taken in seconds."""
    env = dict(os.environ)
    paths = [str(where / "src"), str(where / "guard")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env.update(
        PYTHONPATH=os.pathsep.join(paths),
        CI="1",
        MUTATION_MODULE=module_name(copy, where),
        MUTATION_FILE=str(copy),
        MUTATION_GUARD_LOG=str(where / "guard.log"),
        HYPOTHESIS_STORAGE_DIRECTORY=str(where / "hypothesis"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    command = [sys.executable, "-m", "pytest", *tests, "-x", "-q"]
    command += ["-p", "no:cacheprovider", "-n", "0", "-p", "_mutation_guard"]
    start = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
        code = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        code = None
    log = where / "guard.log"
    # The copy's temporary path, shortened so that results do not churn.
    guard = log.read_text().replace(str(where), "<copy>") if log.exists() else None
    return code, output, guard, round(time.monotonic() - start, 1)


def first_failure(output: str) -> str | None:
    """The first failing test in pytest's short summary (`-ra`)."""
    match = re.search(r"^(?:FAILED|ERROR) (.+)$", output, re.MULTILINE)
    # "FAILED <node id> - <message>"; a node id may hold spaces (its parameters).
    return match.group(1).split(" - ", 1)[0] if match else None


def failure_lines(output: str, count: int = 12) -> list[str]:
    """The first `count` error lines (`E   ...`) of pytest's report: what failed."""
    return [line for line in output.splitlines() if line.startswith("E ")][:count]


def diff(mutant: Mutant) -> str:
    before = (ROOT / mutant.file).read_text()
    after = before.replace(mutant.original, mutant.replacement)
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        f"a/{mutant.file}",
        f"b/{mutant.file}",
        n=1,
    )
    return "".join(lines)


def classify(code: int | None, guard: str | None) -> str:
    if code is None:
        return "timeout"
    if guard is None:
        return "error"  # the guard did not run: the copy was not checked
    return {PASSED: "survived", FAILED: "killed"}.get(code, "error")


def run_mutant(mutant: Mutant, timeout: float, state: dict) -> dict:
    """Apply `mutant` to a copy of src/, run its tests, and say what happened."""
    present, missing = split_tests(mutant.tests)
    record = {
        "name": mutant.name,
        "module": mutant.module,
        "file": mutant.file,
        "description": mutant.description,
        "equivalent": mutant.equivalent,
        "tests": present,
        "missing_tests": missing,
        "diff": diff(mutant),
        "source_sha256": file_hash(ROOT / mutant.file),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **state,
    }
    if not present:
        return record | {"status": "error", "message": "no test file exists"}
    with tempfile.TemporaryDirectory(prefix="scorax-mutant-") as tmp:
        where = pathlib.Path(tmp)
        copy = mutated_copy(mutant, where)
        code, output, guard, seconds = run_pytest(present, where, copy, timeout)
    status = classify(code, guard)
    record |= {"status": status, "returncode": code, "seconds": seconds}
    record["guard"] = guard
    if status == "killed":
        record["killed_by"] = first_failure(output)
        record["failure"] = failure_lines(output)
        detectors = tuple(CHANGE_DETECTORS)
        record["change_detector_only"] = bool(
            record["killed_by"] and record["killed_by"].startswith(detectors)
        )
    elif status != "survived":
        record["message"] = output[-4000:]
    return record


def run_baseline(mutants: list[Mutant], timeout: float) -> bool:
    """Run the selected mutants' tests on an unmutated copy: a mutant is only
    killed by a test that passes without it."""
    tests = []
    for mutant in mutants:
        tests += [t for t in split_tests(mutant.tests)[0] if t not in tests]
    with tempfile.TemporaryDirectory(prefix="scorax-baseline-") as tmp:
        where = pathlib.Path(tmp)
        copy = mutated_copy(None, where)
        code, output, guard, seconds = run_pytest(tests, where, copy, timeout)
    print(f"baseline ({len(tests)} test paths, {seconds} s): exit status {code}")
    if code != PASSED or guard is None:
        print(output[-4000:])
        return False
    return True


def load_results() -> dict:
    if RESULTS.exists():
        return json.loads(RESULTS.read_text())
    return {"mutants": {}}


def save_results(results: dict) -> None:
    known = {m.name for m in MUTANTS}
    results["mutants"] = {
        name: record
        for name, record in sorted(results["mutants"].items())
        if name in known
    }
    RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")


def select(modules: list[str] | None, names: list[str] | None) -> list[Mutant]:
    """The mutants of `modules` and those named `names` (all without either)."""
    if not modules and not names:
        return list(MUTANTS)
    chosen = [
        m for m in MUTANTS if m.module in (modules or ()) or m.name in (names or ())
    ]
    unknown = sorted(set(names or ()) - {m.name for m in MUTANTS})
    if unknown:
        raise SystemExit(f"no mutant named {', '.join(unknown)} (see --list)")
    return chosen


def run_all(chosen: list[Mutant], timeout: float) -> None:
    state = tree_state()
    for index, mutant in enumerate(chosen, 1):
        print(f"[{index}/{len(chosen)}] {mutant.module}: {mutant.name} ...", flush=True)
        record = run_mutant(mutant, timeout, state)
        # Saved after each mutant, so that an interrupted run keeps what it did,
        # into the results as they are now on disk.
        results = load_results()
        results["mutants"][mutant.name] = record
        save_results(results)
        where = f" by {record['killed_by']}" if record.get("killed_by") else ""
        print(f"    {record['status']}{where} ({record.get('seconds', 0)} s)")
        if record["missing_tests"]:
            print(f"    MISSING test files: {', '.join(record['missing_tests'])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", action="append", choices=MODULES)
    parser.add_argument("--name", action="append")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--list", action="store_true")
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="first run the selected tests without a mutant; stop if they fail",
    )
    args = parser.parse_args(argv)
    found = problems(MUTANTS)
    if found:
        print("The mutant list is out of date:\n  " + "\n  ".join(found))
        return 2
    if args.list:
        for m in select(args.module, args.name):
            print(f"{m.module:18} {m.name:45} {m.file}")
        return 0
    if args.check:
        return check(load_results())
    if not args.report_only:
        chosen = select(args.module, args.name)
        if args.baseline and not run_baseline(chosen, args.timeout):
            print("The tests fail without a mutant: fix them first.")
            return 2
        run_all(chosen, args.timeout)
    return write_report(load_results())


if __name__ == "__main__":
    sys.exit(main())
