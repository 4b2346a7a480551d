"""Run benchmarks and write `benchmarks/results/<machine>.json` and `.md`.

The files keep the sections of benchmarks not run this time, so that a run of one
benchmark replaces only its own section.

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
from collections.abc import Callable
from typing import Any

import jax

from . import (
    consistency,
    fit,
    likelihood,
    mixture,
    objectives,
    recipes,
    samplers,
    trace,
    unet,
)
from ._harness import Benchmark, measurement_table


BENCHMARKS: dict[str, Benchmark] = {
    "mixture": mixture.run,
    "objectives": objectives.run,
    "fit": fit.run,
    "samplers": samplers.run,
    "likelihood": likelihood.run,
    "trace": trace.run,
    "unet": unet.run,
    "recipes": recipes.run,
    "consistency": consistency.run,
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


def accuracy_table(name: str, rows: list[samplers.Accuracy]) -> list[str]:
    return [
        samplers.MARKDOWN_HEADER,
        *(row.markdown_row(name) for row in rows),
        *samplers.target_lines(rows),
    ]


# How each benchmark's rows become a markdown table (default: `measurement_table`).
TABLES: dict[str, Callable[[str, list[Any]], list[str]]] = {
    "samplers": accuracy_table,
    "likelihood": likelihood.markdown_table,
    "trace": trace.markdown_table,
    "recipes": recipes.markdown_table,
    "consistency": consistency.markdown_table,
}


def section_markdown(name: str, run: dict[str, str], rows: list[Any]) -> str:
    """One benchmark's section: its heading, when and how it ran, its table."""
    table = TABLES.get(name, measurement_table)(name, rows)
    lines = [f"## {name}", "", f"Run: {run['mode']}, on {run['date']}.", "", *table]
    return "\n".join(lines)


def split_sections(markdown: str) -> dict[str, str]:
    """The `## name` sections of a results file, each as written, by name."""
    sections: dict[str, str] = {}
    name = None
    for line in markdown.splitlines():
        if line.startswith("## "):
            name = line[3:].strip()
            sections[name] = line
        elif name is not None:
            sections[name] += "\n" + line
    return {name: text.strip() for name, text in sections.items()}


def to_markdown(header: dict[str, Any], sections: dict[str, str]) -> str:
    info = header["info"]
    lines = [
        f"# Benchmarks: `{header['machine']}`",
        "",
        f"- Processor: {info['processor']}",
        f"- CPU count: {info['cpu_count']}",
        f"- JAX backend: {info['jax_backend']}",
        f"- Devices: {info['device_count']} x {info['device_kinds']}",
        f"- Last run: {header['mode']}, on {header['date']} "
        f"({', '.join(header['ran'])}); each section says when it ran",
        "- Versions (last run): "
        + ", ".join(f"{name} {ver}" for name, ver in header["versions"].items()),
        "",
        "Times in seconds, as reference / candidate. Ratio is candidate median over "
        "reference median: below 1 means the candidate is faster.",
    ]
    for text in sections.values():
        lines += ["", text]
    return "\n".join(lines) + "\n"


def write_results(
    machine: str, header: dict[str, Any], results: dict[str, list[Any]]
) -> str:
    """Write `results/<machine>.json` and `.md`: the sections of the benchmarks that
    ran replace theirs, and those of the others, already in the files, are kept.

    Returns the markdown written.
    """
    json_path = RESULTS / f"{machine}.json"
    markdown_path = RESULTS / f"{machine}.md"
    old = json.loads(json_path.read_text()) if json_path.exists() else {}
    old_results = old.get("results", {})
    # Files written before sections were merged have one mode and date for all.
    old_runs = old.get("runs") or {
        name: {"mode": old.get("mode", "?"), "date": old.get("date", "?")}
        for name in old_results
    }
    old_sections = (
        split_sections(markdown_path.read_text()) if markdown_path.exists() else {}
    )
    run = {"mode": header["mode"], "date": header["date"]}
    names = [*BENCHMARKS, *(name for name in old_results if name not in BENCHMARKS)]
    merged_results, runs, sections = {}, {}, {}
    for name in names:
        if name in results:
            merged_results[name] = [row.to_json() for row in results[name]]
            runs[name] = run
            sections[name] = section_markdown(name, run, results[name])
        elif name in old_results:
            merged_results[name] = old_results[name]
            runs[name] = old_runs.get(name, {"mode": "?", "date": "?"})
            text = old_sections.get(name, f"## {name}\n\n(no table kept)")
            if "\nRun: " not in text:
                heading, _, rest = text.partition("\n")
                text = (
                    f"{heading}\n\nRun: {runs[name]['mode']}, on "
                    f"{runs[name]['date']}.\n{rest}"
                )
            sections[name] = text
    record = {**header, "runs": runs, "results": merged_results}
    markdown = to_markdown(header, sections)
    RESULTS.mkdir(exist_ok=True)
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    markdown_path.write_text(markdown)
    return markdown


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
        "ran": list(results),
        "versions": versions(),
    }
    markdown = write_results(machine, header, results)
    print(markdown)
    print(f"Wrote {RESULTS / machine}.json and .md (kept the sections not run)")


if __name__ == "__main__":
    main()
