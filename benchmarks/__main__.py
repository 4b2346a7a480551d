"""Run benchmarks and write `benchmarks/results/<machine>.json` and `.md`.

python -m benchmarks                   # every benchmark
python -m benchmarks mixture --quick   # one benchmark, small and fast
python -m benchmarks --machine laptop  # results/laptop.{json,md}
"""

import argparse
import datetime
import importlib
import importlib.metadata
import json
import os
import pathlib
import platform
import re
from typing import Any

import jax

from . import fit, mixture, objectives, samplers
from ._harness import Benchmark


BENCHMARKS: dict[str, Benchmark] = {
    "mixture": mixture.run,
    "objectives": objectives.run,
    "fit": fit.run,
    "samplers": samplers.run,
}
RESULTS = pathlib.Path(__file__).parent / "results"
PACKAGES = ("jax", "jaxlib", "equinox", "diffrax", "optax", "scorax")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def device_kinds() -> list[str]:
    return sorted({device.device_kind for device in jax.devices()})


def machine_slug() -> str:
    """JAX backend plus device kinds, e.g. `cpu` or `gpu-nvidia-h100-80gb-hbm3`."""
    backend = jax.default_backend()
    kinds = [kind for kind in device_kinds() if slug(kind) != slug(backend)]
    return slug("-".join([backend, *kinds]))


def cpu_model() -> str:
    """The CPU model name, and nothing that identifies the host."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    return {
        "processor": f"{cpu_model()} ({platform.system()} {platform.machine()})",
        "cpu_count": os.cpu_count(),
        "jax_backend": jax.default_backend(),
        "device_kinds": ", ".join(device_kinds()),
        "device_count": jax.device_count(),
    }


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:  # run from a source tree
            found[package] = getattr(
                importlib.import_module(package), "__version__", "?"
            )
    return found


def to_markdown(header: dict[str, Any], results: dict[str, list[Any]]) -> str:
    info = header["info"]
    lines = [
        f"# Benchmarks: `{header['machine']}`",
        "",
        f"- Processor: {info['processor']}",
        f"- CPU count: {info['cpu_count']}",
        f"- JAX backend: {info['jax_backend']}",
        f"- Devices: {info['device_count']} x {info['device_kinds']}",
        f"- Mode: {header['mode']}, run on {header['date']}",
        "- Versions: "
        + ", ".join(f"{name} {ver}" for name, ver in header["versions"].items()),
        "",
        "Times in seconds, as reference / candidate. Ratio is candidate median over "
        "reference median: below 1 means the candidate is faster.",
    ]
    for name, measurements in results.items():
        if measurements and isinstance(measurements[0], samplers.Accuracy):
            lines += ["", f"## {name}", "", samplers.MARKDOWN_HEADER]
            lines += [row.markdown_row(name) for row in measurements]
            continue
        lines += [
            "",
            f"## {name}",
            "",
            "| name | case | reference | candidate | compile s | median s | ratio "
            "| max rel diff |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for m in measurements:
            ref, cand = m.reference_timing, m.candidate_timing
            lines.append(
                f"| {name} | {m.case} | `{m.reference}` | `{m.candidate}` "
                f"| {ref.compile_s:.3g} / {cand.compile_s:.3g} "
                f"| {ref.median_s:.3g} / {cand.median_s:.3g} "
                f"| {m.ratio:.3f} | {m.max_rel_diff:.1e} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run scorax benchmarks; write results/<machine>.json and .md.",
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="name",
        help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes and few repeats: checks that everything runs",
    )
    parser.add_argument(
        "--machine",
        help="name for the results files (default: JAX backend and device kind)",
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    machine = slug(args.machine) if args.machine is not None else machine_slug()
    if not machine:
        parser.error("--machine needs at least one letter or digit")

    results = {}
    for name in args.names or BENCHMARKS:
        print(f"Running {name}...", flush=True)
        results[name] = BENCHMARKS[name](quick=args.quick)

    header = {
        "machine": machine,
        "info": machine_info(),
        "mode": "quick" if args.quick else "full",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": versions(),
    }
    record = {
        **header,
        "results": {
            name: [m.to_json() for m in measurements]
            for name, measurements in results.items()
        },
    }
    markdown = to_markdown(header, results)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{machine}.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / f"{machine}.md").write_text(markdown)
    print(markdown)
    print(f"Wrote {RESULTS / machine}.json and .md")


if __name__ == "__main__":
    main()
