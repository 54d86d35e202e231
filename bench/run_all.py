"""Runs every benchmark script, writes ``bench/results/<name>.json`` each, and prints one table.

Scripts: ``ordering_step``, ``deblur_step``, ``inference_latency`` and, when present, ``data_loader``.
Each runs in its own process (so one's memory and threads do not disturb the next) with ``--out``
and whichever of ``--device``/``--quick``/``--compile`` it accepts (read from its ``--help``). The
table lists each script's ``summary`` entries (``name``, ``value``, ``unit``, ``note``); ``--out``
also writes everything, with the machine, to one JSON file (``make bench`` uses
``bench/results.json``).

    PYTHONPATH=src python bench/run_all.py --quick
    PYTHONPATH=src python bench/run_all.py --out bench/results.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import machine_info, print_table, write_json

HERE = Path(__file__).resolve().parent
SCRIPTS = ("ordering_step", "deblur_step", "inference_latency", "data_loader")


def _accepted_flags(script: Path, env: dict[str, str]) -> str:
    try:
        return subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                              timeout=60, env=env).stdout
    except (subprocess.SubprocessError, OSError):
        return ""


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _summary(name: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    """The script's ``summary`` list; else one row per entry of a ``results`` dict (its first
    ``*_per_s`` figure, else its first number); else its numeric top-level values."""
    if isinstance(result.get("summary"), list):
        return [{"script": name, **entry} for entry in result["summary"] if isinstance(entry, dict)]
    rows = []
    if isinstance(result.get("results"), dict):
        for case, values in result["results"].items():
            if not isinstance(values, dict):
                continue
            numeric = [(k, v) for k, v in values.items() if _number(v)]
            pick = next(((k, v) for k, v in numeric if k.endswith("per_s")), numeric[0] if numeric else None)
            if pick:
                rows.append({"script": name, "name": case, "value": pick[1], "unit": pick[0], "note": ""})
        return rows
    for key, value in result.items():
        if _number(value):
            rows.append({"script": name, "name": key, "value": value, "unit": "", "note": ""})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="combined JSON (e.g. bench/results.json)")
    parser.add_argument("--results-dir", default=str(HERE / "results"), help="per-script JSON files go here")
    parser.add_argument("--scripts", nargs="+", default=list(SCRIPTS), choices=list(SCRIPTS))
    parser.add_argument("--device", default=None, help="passed to every script (default: theirs, i.e. auto)")
    parser.add_argument("--quick", action="store_true", help="smallest settings everywhere")
    parser.add_argument("--compile", action="store_true", help="add the torch.compile variants")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per script")
    args = parser.parse_args(argv)

    env = dict(os.environ)
    src = str(HERE.parent / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)

    combined: dict[str, Any] = {"bench": "run_all", "scripts": {}}
    table: list[dict[str, Any]] = []
    failed = []
    for name in args.scripts:
        script = HERE / f"{name}.py"
        if not script.exists():
            print(f"== {name}: {script.name} not present, skipped", flush=True)
            combined["scripts"][name] = {"skipped": "not present"}
            continue
        help_text = _accepted_flags(script, env)
        out = results_dir / f"{name}.json"
        cmd = [sys.executable, str(script)]
        if "--out" in help_text:
            cmd += ["--out", str(out)]
        if args.device and "--device" in help_text:
            cmd += ["--device", args.device]
        if args.quick and "--quick" in help_text:
            cmd += ["--quick"]
        if args.compile and "--compile" in help_text:
            cmd += ["--compile"]
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        if out.exists():
            out.unlink()
        start = time.perf_counter()
        try:
            rc = subprocess.run(cmd, env=env, timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        seconds = round(time.perf_counter() - start, 1)
        entry: dict[str, Any] = {"rc": rc, "seconds": seconds, "json": str(out)}
        if out.exists():
            try:
                entry["result"] = json.loads(out.read_text())
            except json.JSONDecodeError as exc:
                entry["error"] = f"unreadable JSON: {exc}"
        if rc != 0:
            failed.append(name)
        combined["scripts"][name] = entry
        table += _summary(name, entry.get("result", {}))
        print(f"== {name}: rc={rc} in {seconds}s", flush=True)

    print()
    print_table(table, ["script", "name", "value", "unit", "note"])
    if failed:
        print(f"\nFAILED: {', '.join(failed)}")
    combined["failed"] = failed
    if args.out:
        write_json(args.out, combined)
    else:
        combined["machine"] = machine_info()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
