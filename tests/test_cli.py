"""The command line: `python -m scorax demo` and the `scorax` script."""

import itertools
import json
import math
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

import scorax
from scorax import _cli


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOTS = ("samples.png", "score_field.png", "loss.png")
# A run that only exercises the plumbing: seconds, not a minute.
TINY = [
    "--steps",
    "20",
    "--batch-size",
    "16",
    "--width",
    "8",
    "--depth",
    "1",
    "--samples",
    "32",
    "--sampler-steps",
    "4",
    "--quiet",
]


def _exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        _cli.main(argv)
    code = info.value.code
    assert isinstance(code, int)
    return code


def test_help_lists_the_options(capsys):
    assert _exit_code(["demo", "--help"]) == 0
    text = capsys.readouterr().out
    for option in (
        "--dataset",
        "--objective",
        "--path",
        "--sampler",
        "--steps",
        "--samples",
        "--seed",
        "--output",
    ):
        assert option in text
    assert "(default: 6000)" in text  # defaults are shown
    assert "examples:" in text
    assert "gaussian_mixture" in text and "two_moons" in text


def test_top_level_help_and_version(capsys):
    assert _exit_code(["--help"]) == 0
    assert "demo" in capsys.readouterr().out
    assert _exit_code(["--version"]) == 0
    assert scorax.__version__ in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["demo", "--path", "nope"], "--path"),
        (["demo", "--dataset", "mnist"], "--dataset"),
        (["demo", "--objective", "energy"], "--objective"),
        (["demo", "--steps", "0"], "--steps"),
        (["demo", "--steps", "many"], "--steps"),
        (["demo", "--samples", "-5"], "--samples"),
        (["demo", "--learning-rate", "nan"], "--learning-rate"),
        (["demo", "--sampler", "sde,euler"], "--sampler"),
        (["demo", "--sampler", "consistency"], "--sampler"),
        (["demo", "--sampler", "ddim", "--path", "ve"], "--sampler"),
        (["demo", "--sampler", "ddpm", "--sampler-steps", "4"], "--sampler-steps"),
        (["demo", "--conditional", "--dataset", "rings"], "--conditional"),
        (["demo", "--guidance", "1,2"], "--guidance"),
        (["demo", "--conditional", "--guidance", "0,-1"], "--guidance"),
        (["demo", "--no-such-option"], "--no-such-option"),
    ],
)
def test_bad_options_exit_2_with_one_line(capsys, argv, named):
    assert _exit_code(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("scorax") and "error:" in lines[0]
    assert named in lines[0]
    assert "Traceback" not in captured.err


def test_scorax_errors_exit_1(capsys, monkeypatch):
    def fail(options):
        raise ValueError("`num_steps` must be an integer >= 1, got 0.")

    monkeypatch.setattr(_cli, "run_demo", fail)
    assert _cli.main(["demo"]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == (
        "scorax: error: `num_steps` must be an integer >= 1, got 0."
    )


def test_unwritable_output_exits_1(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert _cli.main(["demo", *TINY, "--output", str(blocker / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("scorax: error:") and "Traceback" not in err


def _finite_numbers(value: object) -> bool:
    """Every number inside `value` (nested dicts and lists) is finite."""
    if isinstance(value, dict):
        return all(_finite_numbers(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite_numbers(v) for v in value)
    if isinstance(value, bool | str) or value is None:
        return True
    return isinstance(value, int | float) and math.isfinite(value)


@pytest.mark.slow
def test_tiny_demo_writes_plots_and_summary(capsys, tmp_path):
    output = tmp_path / "demo"
    assert _cli.main(["demo", *TINY, "--output", str(output)]) == 0
    assert "sliced Wasserstein" in capsys.readouterr().out

    for name in PLOTS:
        assert (output / name).read_bytes().startswith(PNG_SIGNATURE), name
    summary = json.loads((output / "summary.json").read_text())
    assert set(summary) >= {
        "scorax_version",
        "options",
        "backend",
        "final_loss",
        "samplers",
        "sliced_wasserstein_noise_floor",
        "fisher_divergence",
        "conditional",
        "wall_time_s",
        "files",
    }
    assert summary["conditional"] is None
    assert summary["scorax_version"] == scorax.__version__
    assert summary["options"]["steps"] == 20
    assert summary["options"]["samplers"] == ["sde", "dpm3m-time"]
    assert set(summary["files"]) == {"summary.json", *PLOTS}
    assert set(summary["samplers"]) == {"sde", "dpm3m-time"}
    for values in summary["samplers"].values():
        assert set(values) == {"sliced_wasserstein", "num_evaluations", "wall_time_s"}
        assert values["sliced_wasserstein"] >= 0
        assert values["num_evaluations"] >= 4
    assert len(summary["fisher_divergence"]) == len(_cli.NOISE_TO_SIGNAL)
    for entry in summary["fisher_divergence"]:
        assert set(entry) == {"t", "noise_to_signal", "fisher_divergence", "relative"}
        assert 0 < entry["t"] <= 1
    times = summary["wall_time_s"]
    assert {
        "total",
        "data",
        "train",
        "sample_sde",
        "sample_dpm3m-time",
        "plots",
    } <= set(times)
    assert times["total"] >= times["train"]
    assert _finite_numbers(summary)


@pytest.mark.parametrize(
    ("dataset", "plots"), [("gaussian_mixture", True), ("two_moons", False)]
)
def test_tiny_conditional_demo_samples_each_class_at_each_weight(
    capsys, tmp_path, dataset, plots
):
    """--conditional trains a class-conditional model and reports, per class and
    guidance weight, the distance to fresh data of the class and (mixture only)
    the mean exact class posterior; conditional.png shows them."""
    output = tmp_path / dataset
    argv = ["demo", *TINY, "--conditional", "--guidance", "0,3", "--sampler", "edm"]
    argv += ["--dataset", dataset, "--output", str(output)]
    assert _cli.main(argv + ([] if plots else ["--no-plots"])) == 0
    printed = capsys.readouterr().out
    assert "class 1, guidance 3" in printed
    summary = json.loads((output / "summary.json").read_text())
    assert summary["options"]["conditional"] is True
    assert summary["options"]["guidance"] == [0.0, 3.0]
    conditional = summary["conditional"]
    assert conditional["sampler"] == "edm" and conditional["label_dropout"] == 0.2
    assert set(conditional["noise_floor"]) == {"0", "1"}
    pairs = [(entry["label"], entry["weight"]) for entry in conditional["samples"]]
    assert pairs == [(0, 0.0), (0, 3.0), (1, 0.0), (1, 3.0)]
    for entry in conditional["samples"]:
        assert set(entry) == {
            "label",
            "weight",
            "sliced_wasserstein",
            "class_posterior",
            "num_evaluations",
        }
        assert entry["sliced_wasserstein"] >= 0
        assert entry["num_evaluations"] == 4 * 2 - 1  # edm, 4 steps
        if dataset == "gaussian_mixture":
            assert 0 <= entry["class_posterior"] <= 1
        else:
            assert entry["class_posterior"] is None
    if plots:
        png = (output / "conditional.png").read_bytes()
        assert png.startswith(PNG_SIGNATURE) and "conditional.png" in summary["files"]
    else:
        assert summary["files"] == ["summary.json"]
    assert "conditional" in summary["wall_time_s"]
    assert _finite_numbers(summary)


def test_option_combinations():
    ok = _cli.DemoOptions(samplers=("ddim", "ddpm"), path="vp")
    assert _cli.check_combination(ok) is None
    wrong = _cli.DemoOptions(samplers=("sde", "ddpm"), path="edm")
    message = _cli.check_combination(wrong)
    assert message is not None and "--sampler" in message and "VPPath" in message
    # Every path reaches each noise level of the report at its own time, strictly
    # inside (0, 1): strictly increasing times for the increasing ratios (equal
    # times would mean two levels clamped to the same end, one of them missed).
    assert all(a < b for a, b in itertools.pairwise(_cli.NOISE_TO_SIGNAL))
    for name in _cli.PATHS:
        path = _cli.PATHS[name]()
        times = [float(path.inverse_noise_to_signal(r)) for r in _cli.NOISE_TO_SIGNAL]
        assert 0 < times[0] and times[-1] < 1, (name, times)
        assert all(a < b for a, b in itertools.pairwise(times)), (name, times)


def test_python_m_scorax_demo_help():
    completed = subprocess.run(
        [sys.executable, "-m", "scorax", "demo", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "usage: scorax demo" in completed.stdout
    assert "--sampler" in completed.stdout


def test_runtime_checks_of_traced_code_exit_1(capsys, monkeypatch):
    """An `eqx.error_if` raised while sampling is reported as one line, with or
    without `eqx.filter_jit`; other errors keep their traceback."""

    def fail_traced(options):
        x = jnp.ones(())
        eqx.filter_jit(lambda x: eqx.error_if(x, x > 0, "`x` must be <= 0."))(x)

    def fail_jitted(options):
        x = jnp.ones(())
        jax.jit(lambda x: eqx.error_if(x, x > 0, "`x` must be <= 0."))(x)

    for fail in (fail_traced, fail_jitted):
        monkeypatch.setattr(_cli, "run_demo", fail)
        assert _cli.main(["demo"]) == 1
        assert capsys.readouterr().err == "scorax: error: `x` must be <= 0.\n"

    def bug(options):
        raise KeyError("a bug")

    monkeypatch.setattr(_cli, "run_demo", bug)
    with pytest.raises(KeyError):
        _cli.main(["demo"])
