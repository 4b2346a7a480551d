"""The mutation report (`mutation/report.md`) from `mutation/results.json`, and
the check that both are current."""

import datetime
import hashlib
import pathlib

from mutants import CHANGE_DETECTORS, MODULES, Mutant, MUTANTS


ROOT = pathlib.Path(__file__).resolve().parent.parent
REPORT = ROOT / "mutation" / "report.md"


def file_hash(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def is_equivalent(record: dict) -> bool:
    """An equivalent mutant: one that survives with a written reason."""
    return record["status"] == "survived" and bool(record.get("equivalent"))


def is_unexplained(record: dict) -> bool:
    return record["status"] == "survived" and not record.get("equivalent")


def stale(mutant: Mutant, record: dict | None) -> str | None:
    """Why `record` no longer describes `mutant`, or None if it does."""
    if record is None:
        return "never run"
    if record.get("equivalent") != mutant.equivalent:
        return "its explanation changed since the run"
    if record["source_sha256"] != file_hash(ROOT / mutant.file):
        return f"{mutant.file} changed since the run"
    if record.get("missing_tests") and any(
        (ROOT / t.split("::")[0]).exists() for t in record["missing_tests"]
    ):
        return "a test file that was missing exists now"
    return None


def scores(records: list[dict]) -> list[tuple]:
    """Per module: mutants, killed, killed by recorded outputs only, survived,
    equivalent, errors, and the score killed / (total - equivalent)."""
    rows = []
    for module in MODULES:
        mine = [r for r in records if r["module"] == module]
        killed = sum(r["status"] == "killed" for r in mine)
        only = sum(bool(r.get("change_detector_only")) for r in mine)
        equivalent = sum(is_equivalent(r) for r in mine)
        survived = sum(is_unexplained(r) for r in mine)
        errors = sum(r["status"] in ("error", "timeout") for r in mine)
        scored = len(mine) - equivalent
        score = f"{killed}/{scored} ({100 * killed / scored:.0f}%)" if scored else "-"
        rows.append(
            (module, len(mine), killed, only, survived, equivalent, errors, score)
        )
    return rows


def _header(results: dict, records: list[dict], stale_names: list[str]) -> list[str]:
    commits = sorted({r["commit"][:12] for r in records})
    dirty = sorted({path for r in records for path in r.get("uncommitted", ())})
    dates = sorted(r["date"] for r in records)
    lines = [
        "# Mutation report",
        "",
        "Written by `python mutation/run.py` (the nox session `mutation`) from "
        "`mutation/results.json`; the mutants are listed in `mutation/mutants.py`. "
        "Each mutant was applied to a copy of `src/` and the tests that cover its "
        "module were run against it (`-x`, one process, `CI=1`).",
        "",
        f"- Report written: {datetime.date.today().isoformat()}",
        f"- Mutants run: {dates[0]} to {dates[-1]}" if dates else "- Mutants run: none",
        f"- Commit tested: {', '.join(commits) or '-'}",
    ]
    if dirty:
        lines.append(
            "- With uncommitted changes in: " + ", ".join(f"`{p[3:]}`" for p in dirty)
        )
    if stale_names:
        lines.append(
            f"- **OUT OF DATE**: {len(stale_names)} mutant(s) need a re-run: "
            + ", ".join(stale_names)
        )
    return [*lines, ""]


def _table(records: list[dict]) -> list[str]:
    lines = [
        "## Mutation score per module",
        "",
        "Score = killed / (mutants - equivalent). *Recorded only*: killed, but only "
        f"by a test of recorded outputs ({', '.join(CHANGE_DETECTORS)}), which "
        "notices any change, right or wrong: a gap in the formula tests.",
        "",
        "| module | mutants | killed | recorded only | survived (unexplained) "
        "| equivalent | errors | score |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = scores(records)
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    total = [sum(row[i] for row in rows) for i in range(1, 7)]
    scored = total[0] - total[4]
    score = f"{total[1]}/{scored} ({100 * total[1] / scored:.0f}%)" if scored else "-"
    lines.append("| **all** | " + " | ".join(map(str, total)) + f" | {score} |")
    return [*lines, ""]


def _survivor(record: dict) -> list[str]:
    lines = [
        f"### `{record['name']}` ({record['module']}, `{record['file']}`)",
        "",
        record["description"],
        "",
    ]
    if record.get("equivalent"):
        lines += [f"Equivalent: {record['equivalent']}", ""]
    else:
        lines += [
            "**UNEXPLAINED**: no test kills this mutant and it is not marked "
            "equivalent. Kill it with a new or stronger test, or explain in "
            "`mutation/mutants.py` why it computes the same thing.",
            "",
        ]
    lines.append(f"Tests run: {', '.join(f'`{t}`' for t in record['tests'])}.")
    if record.get("missing_tests"):
        missing = ", ".join(f"`{t}`" for t in record["missing_tests"])
        lines.append(f"**MISSING** test files (not run): {missing}.")
    return [*lines, "", "```diff", record["diff"].rstrip("\n"), "```", ""]


def _killed(records: list[dict]) -> list[str]:
    lines = [
        "## Killed mutants",
        "",
        "| mutant | module | first failing test | seconds |",
        "| --- | --- | --- | --- |",
    ]
    for r in records:
        if r["status"] != "killed":
            continue
        by = f"`{r.get('killed_by') or '?'}`"
        if r.get("change_detector_only"):
            by += " (recorded output only)"
        if r.get("equivalent"):
            by += " **marked equivalent, but killed: correct its explanation**"
        lines.append(f"| `{r['name']}` | {r['module']} | {by} | {r['seconds']} |")
    return [*lines, ""]


def _errors(records: list[dict]) -> list[str]:
    failed = [r for r in records if r["status"] in ("error", "timeout")]
    if not failed:
        return []
    lines = ["## Errors (neither killed nor survived: look into them)", ""]
    for r in failed:
        lines += [
            f"### `{r['name']}` ({r['module']}): {r['status']}, exit status "
            f"{r.get('returncode')}",
            "",
            "```",
            (r.get("message") or "").strip()[-1500:],
            "```",
            "",
        ]
    return lines


def render(results: dict) -> tuple[str, list[str]]:
    """The report's text, and the names of the mutants that need a re-run."""
    runs = results["mutants"]
    records = [runs[m.name] for m in MUTANTS if m.name in runs]
    stale_names = [m.name for m in MUTANTS if stale(m, runs.get(m.name))]
    survivors = [r for r in records if r["status"] == "survived"]
    survivors.sort(key=lambda r: (bool(r.get("equivalent")), r["module"]))
    lines = _header(results, records, stale_names) + _table(records)
    lines += ["## Surviving mutants", ""]
    if not survivors:
        lines += ["None.", ""]
    for record in survivors:
        lines += _survivor(record)
    lines += _killed(records) + _errors(records)
    return "\n".join(lines).rstrip("\n") + "\n", stale_names


def write_report(results: dict) -> int:
    """Write the report; 1 if a mutant survives unexplained or errs, else 0."""
    text, stale_names = render(results)
    REPORT.write_text(text)
    records = list(results["mutants"].values())
    unexplained = [r["name"] for r in records if is_unexplained(r)]
    errors = [r["name"] for r in records if r["status"] in ("error", "timeout")]
    print(f"Wrote {REPORT.relative_to(ROOT)}.")
    for label, names in (
        ("UNEXPLAINED survivors", unexplained),
        ("errors", errors),
        ("out of date", stale_names),
    ):
        if names:
            print(f"{label}: {', '.join(names)}")
    return 1 if unexplained or errors else 0


def check(results: dict) -> int:
    """1 unless every mutant has a current result and the report matches them."""
    text, stale_names = render(results)
    for name in stale_names:
        record = results["mutants"].get(name)
        mutant = next(m for m in MUTANTS if m.name == name)
        print(f"{name}: {stale(mutant, record)}")
    current = REPORT.exists() and _body(REPORT.read_text()) == _body(text)
    if not current:
        print(f"{REPORT.relative_to(ROOT)} is not the report of results.json.")
    return 1 if stale_names or not current else 0


def _body(text: str) -> str:
    """The report without the line that holds the date it was written."""
    return "\n".join(
        line for line in text.splitlines() if not line.startswith("- Report written")
    )
