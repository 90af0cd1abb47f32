"""python -m dogbreed.cli.optimize <model_dir> --calibration <image folder>

Adds the optimised inference artifact (dogbreed.modeldir.artifact) to an exported model: one made before
the artifact existed, or with other settings. Prints each version's figures per runtime and which runtimes
refused it. Exit status 0 when every version was kept for at least one runtime, 1 when one was refused by
every runtime (disagreeing with the PyTorch network beyond the parity limits), 2 when nothing was made.
"""

from __future__ import annotations

import argparse
import logging
import sys

from dogbreed.modeldir.artifact import (
    QUANTIZE_CHOICES,
    ArtifactError,
    ArtifactSettings,
    ParityLimits,
    image_files,
    not_kept,
    optimize_model_dir,
    pick,
    summary,
)
from dogbreed.modeldir.format import ModelDirError
from dogbreed.modeldir.runtimes import RuntimeUnavailable


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = ArtifactSettings()  # the one home of the defaults; conf/train.yaml's onnx: node agrees
    parser = argparse.ArgumentParser(
        prog="python -m dogbreed.cli.optimize", description=__doc__.splitlines()[2]
    )
    parser.add_argument("model_dir")
    parser.add_argument("--calibration", help="folder of training images (searched recursively)")
    parser.add_argument(
        "--parity",
        help="folder of held-out images to check against (default: the calibration folder's images that "
        "calibration did not use)",
    )
    parser.add_argument("--quantize", choices=QUANTIZE_CHOICES, default=defaults.quantize)
    parser.add_argument("--calibration-size", type=int, default=defaults.calibration_size)
    parser.add_argument("--parity-size", type=int, default=defaults.parity_size)
    for precision, limits in defaults.limits.items():
        parser.add_argument(f"--{precision}-max-prob-diff", type=float, default=limits.max_prob_diff)
        parser.add_argument(
            f"--{precision}-min-top1-agreement", type=float, default=limits.min_top1_agreement
        )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    limits = {
        p: ParityLimits(getattr(args, f"{p}_max_prob_diff"), getattr(args, f"{p}_min_top1_agreement"))
        for p in ArtifactSettings().limits
    }
    settings = ArtifactSettings(args.quantize, args.calibration_size, args.parity_size, limits)
    try:
        if not args.calibration and not args.parity:
            raise ArtifactError("give --calibration <image folder> (and optionally --parity <image folder>)")
        calibration = image_files(args.calibration) if args.calibration else []
        chosen = pick(calibration, settings.calibration_size, settings.seed)
        if args.parity:
            parity, parity_source = image_files(args.parity), "the --parity folder"
        else:
            rest = sorted(set(calibration) - set(chosen))
            parity = rest or calibration
            parity_source = (
                "calibration folder, images calibration did not use"
                if rest
                else "calibration folder, the calibration images themselves (too few for a separate set)"
            )
        sources = {"calibration": "calibration folder", "parity": parity_source}
        record = optimize_model_dir(args.model_dir, chosen, parity, settings, sources)
    except (ArtifactError, RuntimeUnavailable, ModelDirError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary(record))
    refused = not_kept(record)
    if refused:
        print(
            f"error: {', '.join(refused)} refused: outside the parity limits, not kept and never served",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
