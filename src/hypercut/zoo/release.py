"""Put a trained weights file into the zoo, with the evaluation results it is published with.

    python -m hypercut.zoo.release runs/zoo/default/weights.pt default \\
        --results runs/eval/natural/results.json --results runs/eval/tree/results.json:tree

Each ``--results`` file is the ``results.json`` of a ``hypercut-eval`` run; a ``:prefix`` suffix
renames its keys (``test/ppsnr`` -> ``tree/ppsnr``). The weights are re-saved through
:func:`hypercut.export.save_weights` (so the spec is checked and non-finite weights are refused) with
the training run's metrics plus these.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hypercut.export import build_from_spec, read_weights, save_weights
from hypercut.zoo import _FILES, ZOO_DIR


def release(weights: str | Path, name: str, results: list[str]) -> Path:
    """Write zoo entry ``name`` from ``weights`` and the ``results`` files; returns the path written."""
    if name not in _FILES:
        raise KeyError(f"{name!r} is not a zoo entry; add it to hypercut.zoo._FILES first ({sorted(_FILES)})")
    payload = read_weights(weights)
    metrics = {k: v for k, v in payload.get("metrics", {}).items() if not k.startswith(("lr-", "train/"))}
    for item in results:
        path, _, prefix = item.partition(":")
        for key, value in json.loads(Path(path).read_text()).items():
            stage, _, metric = key.partition("/")
            metrics[f"{prefix or stage}/{metric}"] = float(value)
    model = build_from_spec(payload["spec"], weights, "spec")
    model.load_state_dict(payload["state_dict"])
    return save_weights(model, ZOO_DIR / _FILES[name], payload["spec"], metrics)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", help="a weights file (a run's weights.pt)")
    parser.add_argument("name", help=f"zoo entry: one of {sorted(_FILES)}")
    parser.add_argument("--results", action="append", default=[], help="results.json[:prefix] of hypercut-eval")
    args = parser.parse_args(argv)
    path = release(args.weights, args.name, args.results)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
