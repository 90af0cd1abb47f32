"""python serve/predict.py photo.jpg [more.png ...] [--endpoint URL|SAGEMAKER_ENDPOINT_NAME] [--topk 3]

Prints the top-k breeds of each image as the endpoint answers them (default: the local server).
"""

from __future__ import annotations

import argparse
import json
import sys

from dogbreed.config.errors import exit_on_user_error
from dogbreed.serving.client import DEFAULT_ENDPOINT, EndpointError, format_predictions, predict_files


@exit_on_user_error  # no AWS region for --endpoint <name>: one error: line, exit 2
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    parser.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help="server URL or SageMaker endpoint name")
    parser.add_argument("--topk", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the answers as JSON")
    args = parser.parse_args(argv)
    try:
        results = predict_files(args.images, args.endpoint, args.topk)
    except (EndpointError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(results, indent=2) if args.json else format_predictions(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
