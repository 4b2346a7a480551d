"""The documentation stays true: every test the identities page names exists."""

import ast
import pathlib
import re
import subprocess
import sys


ROOT = pathlib.Path(__file__).parent.parent


def test_every_identity_names_an_existing_test():
    page = (ROOT / "docs" / "identities.md").read_text()
    references = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", page)
    assert len(references) >= 30
    for path, name in references:
        tree = ast.parse((ROOT / path).read_text())
        names = {
            node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
        }
        assert name in names, f"docs/identities.md names {path}::{name}, not found"


def test_the_home_page_example_runs(tmp_path):
    """The first Python block of docs/index.md runs as written and prints a
    finite distance."""
    page = (ROOT / "docs" / "index.md").read_text()
    code = re.search(r"```python\n(.*?)```", page, re.DOTALL)
    assert code is not None
    script = tmp_path / "example.py"
    script.write_text(code.group(1))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    distance = float(done.stdout.strip().splitlines()[-1].split(":")[-1])
    assert 0 < distance < 1


def test_the_verify_page_runs_and_its_reports_are_what_it_prints(tmp_path):
    """docs/verify.md: its Python blocks run in order as one script, and every
    report the page shows (its text blocks) is printed word for word."""
    page = (ROOT / "docs" / "verify.md").read_text()
    script = tmp_path / "verify.py"
    script.write_text("\n".join(re.findall(r"```python\n(.*?)```", page, re.DOTALL)))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr
    reports = re.findall(r"```text\n(.*?)```", page, re.DOTALL)
    assert len(reports) == 2
    for report in reports:
        assert report.strip() in done.stdout, (report, done.stdout)


def test_the_conditional_digits_example_runs(tmp_path):
    """examples/digits_conditional.py, shortened: trains a class-conditional U-Net
    with label dropout for a few steps and writes the class x guidance-weight
    grid."""
    code = (
        "import runpy, sys\n"
        f"example = runpy.run_path({str(ROOT / 'examples' / 'digits_conditional.py')!r})\n"
        f"summary = example['main'](num_steps=10, weights=(0.0, 2.0), output={str(tmp_path / 'grid.png')!r}, batch_size=16, num_levels=3, channels=(8,))\n"
        "assert summary['samples'] == 20.0, summary\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "grid.png").stat().st_size > 0


def test_the_scaling_example_runs_streamed(tmp_path):
    """examples/scaling_out.py, shortened, as the Scaling out page's `--stream`
    command runs it: trains from an iterator with a checkpoint, resumes from it,
    and samples and evaluates the likelihood through `map_sharded`."""
    checkpoint = tmp_path / "run.eqx"
    code = (
        "import runpy\n"
        f"example = runpy.run_path({str(ROOT / 'examples' / 'scaling_out.py')!r})\n"
        "for steps in (20, 40):\n"
        f"    summary = example['main'](num_steps=steps, num_samples=8, stream=True, checkpoint={str(checkpoint)!r})\n"
        "assert summary['processes'] == 1.0, summary\n"
        "assert all(v == v for v in summary.values()), summary\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert checkpoint.exists()


def test_the_consistency_example_runs(tmp_path):
    """examples/consistency.py, shortened: distils and trains a consistency model
    for a few steps, samples every way, and writes the figure; every distance is
    finite and positive."""
    figure = tmp_path / "consistency.png"
    code = (
        "import math, runpy\n"
        f"example = runpy.run_path({str(ROOT / 'examples' / 'consistency.py')!r})\n"
        f"summary = example['main'](num_steps=20, num_samples=500, output={str(figure)!r}, progress=False)\n"
        "assert len(summary) == 11, summary\n"
        "assert all(math.isfinite(v) and v > 0 for v in summary.values()), summary\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert figure.stat().st_size > 0
