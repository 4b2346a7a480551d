"""The command line: `python -m scorax demo` and the `scorax` script."""

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
        (["demo", "--sampler", "ddim", "--path", "ve"], "--sampler"),
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
        "wall_time_s",
        "files",
    }
    assert summary["scorax_version"] == scorax.__version__
    assert summary["options"]["steps"] == 20
    assert summary["options"]["samplers"] == ["sde", "ode"]
    assert set(summary["files"]) == {"summary.json", *PLOTS}
    assert set(summary["samplers"]) == {"sde", "ode"}
    for values in summary["samplers"].values():
        assert set(values) == {"sliced_wasserstein", "num_evaluations", "wall_time_s"}
        assert values["sliced_wasserstein"] >= 0
        assert values["num_evaluations"] >= 4
    assert len(summary["fisher_divergence"]) == len(_cli.NOISE_TO_SIGNAL)
    for entry in summary["fisher_divergence"]:
        assert set(entry) == {"t", "noise_to_signal", "fisher_divergence", "relative"}
        assert 0 < entry["t"] <= 1
    times = summary["wall_time_s"]
    assert {"total", "data", "train", "sample_sde", "sample_ode", "plots"} <= set(times)
    assert times["total"] >= times["train"]
    assert _finite_numbers(summary)


def test_option_combinations_and_sampler_ranges():
    ok = _cli.DemoOptions(samplers=("ddim", "ddpm"), path="vp")
    assert _cli.check_combination(ok) is None
    wrong = _cli.DemoOptions(samplers=("sde", "ddpm"), path="edm")
    message = _cli.check_combination(wrong)
    assert message is not None and "--path vp" in message
    # Paths with alpha(1) = 0 stop short of t = 1, where their SDE diverges.
    assert _cli.sampling_range(scorax.LinearPath())[1] < 1
    assert _cli.sampling_range(scorax.CosinePath())[1] < 1
    assert _cli.sampling_range(scorax.VPPath()) == (_cli.T_MIN, 1.0)
    for name in _cli.PATHS:  # every path reaches each noise level of the report
        path = _cli.PATHS[name]()
        times = [_cli.noise_to_signal_time(path, r) for r in _cli.NOISE_TO_SIGNAL]
        assert all(0 < t < 1 for t in times) and times == sorted(times)


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


@pytest.mark.parametrize(
    "name", ["dpm1", "dpm2", "dpm3", "dpm2m", "dpm3m", "dpm3m-unic", "dpm2m-sde"]
)
def test_exponential_integrators_run_on_every_path(name):
    """The DPM-Solver names of --sampler build a sampler that runs on each path
    (paths with alpha(1) = 0 stop short of t = 1) and spends the evaluations its
    order and step count say."""
    options = _cli.DemoOptions(samplers=(name,), sampler_steps=2)
    order = {"dpm1": 1, "dpm2": 2, "dpm3": 3}.get(name, 1)
    for path_name in ("vp", "linear"):
        path = _cli.PATHS[path_name]()
        sampler, prior = _cli.make_sampler(
            name, options, path, scorax.NoisePrediction()
        )
        result = eqx.filter_jit(sampler)(
            lambda x, t: 0.5 * x, jnp.ones(2), jax.random.key(0)
        )
        assert bool(jnp.all(jnp.isfinite(result.sample)))
        assert int(result.num_evaluations) == 2 * order + 1  # and the denoising step
        assert prior is path
