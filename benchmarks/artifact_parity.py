"""How the optimised artifact's versions answer against the fp32 PyTorch network; prints JSON.

For each version the model directory keeps (fp32 ONNX, INT8) and each runtime installed: max and mean
|Δprob| and top-1 agreement against PyTorch, on a folder of photos and on a labelled test split (class
folders named as in training), and the test accuracy of both.

    python benchmarks/artifact_parity.py --model-dir runs/train/<run>/model \\
        --photos DIR --test-split data/dogImages/test

The images are read where they are, never copied.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]

import torch  # noqa: E402

from dogbreed.modeldir.artifact import Parity, batches, image_files, softmax  # noqa: E402
from dogbreed.modeldir.reader import load_model, read_model_description  # noqa: E402
from dogbreed.modeldir.runtimes import available_runtimes, open_session  # noqa: E402


def torch_probabilities(model, paths: list[Path]) -> np.ndarray:
    probabilities = [model.probabilities(torch.from_numpy(b)).numpy() for b in batches(model, paths, 16)]
    return np.concatenate(probabilities)


def runtime_probabilities(model, session, paths: list[Path]) -> np.ndarray:
    return np.concatenate([softmax(session(b)) for b in batches(model, paths, 16)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--photos", help="a folder of unlabelled photos")
    parser.add_argument("--test-split", help="a labelled folder: one subfolder per class, as in training")
    args = parser.parse_args()
    model_dir = Path(args.model_dir)
    model = load_model(model_dir)
    config = read_model_description(model_dir).config
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)

    sets: dict[str, tuple[list[Path], np.ndarray | None]] = {}
    if args.photos:
        sets["photos"] = (image_files(args.photos), None)
    if args.test_split:
        index = {name: i for i, name in enumerate(config["class_names"])}
        paths = image_files(args.test_split)
        sets["test_split"] = (paths, np.array([index[p.parent.name] for p in paths]))

    report: dict = {"model": f"{config['arch']}, {config['num_classes']} classes", "sets": {}}
    for set_name, (paths, labels) in sets.items():
        reference = torch_probabilities(model, paths)
        entry: dict = {"images": len(paths)}
        if labels is not None:
            entry["torch_fp32_accuracy"] = round(float((reference.argmax(1) == labels).mean()), 4)
        for precision, artifact in (config.get("artifacts") or {}).items():
            if "file" not in artifact:
                entry[precision] = {"refused": artifact.get("refused")}
                continue
            for runtime in available_runtimes():
                session = open_session(runtime, model_dir / artifact["file"], threads)
                probs = runtime_probabilities(model, session, paths)
                figures = Parity.measure(reference, probs)
                result = {
                    "max_prob_diff": float(f"{figures.max_prob_diff:.3g}"),
                    "mean_prob_diff": float(f"{figures.mean_prob_diff:.3g}"),
                    "top1_agreement": round(figures.top1_agreement, 4),
                }
                if labels is not None:
                    accuracy = float((probs.argmax(1) == labels).mean())
                    result["accuracy"] = round(accuracy, 4)
                    change = 100 * (accuracy - entry["torch_fp32_accuracy"])
                    result["accuracy_change_points"] = round(change, 2)
                entry[f"{runtime} {precision}"] = result
        report["sets"][set_name] = entry
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
