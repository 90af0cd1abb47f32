"""A small, learnable, self-made ImageFolder data set, so the smoke recipe needs no download.

Each class is a shape in a colour of its own, drawn at a random place and size on a noisy
background: easy enough to learn in a minute on a CPU, not so easy that any model gets it at once.
Generated deterministically from a seed and cached; regenerated only when its settings change.
"""

from __future__ import annotations

import colorsys
import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond", "stripes", "bar")
FORMAT_VERSION = 1


def _draw(shape: str, hue: float, size: int, rng: random.Random) -> Image.Image:
    noise = np.random.default_rng(rng.getrandbits(32)).integers(0, 90, (size, size, 3), dtype=np.uint8)
    img = Image.fromarray(noise)
    draw = ImageDraw.Draw(img)
    r, g, b = colorsys.hsv_to_rgb(
        (hue + rng.uniform(-0.03, 0.03)) % 1.0, rng.uniform(0.6, 1), rng.uniform(0.7, 1)
    )
    colour = (int(r * 255), int(g * 255), int(b * 255))
    half = rng.uniform(0.2, 0.35) * size
    cx, cy = rng.uniform(half, size - half), rng.uniform(half, size - half)
    box = (cx - half, cy - half, cx + half, cy + half)
    width = max(2, int(half / 3))
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)], fill=colour)
    elif shape == "cross":
        draw.rectangle((cx - half, cy - width / 2, cx + half, cy + width / 2), fill=colour)
        draw.rectangle((cx - width / 2, cy - half, cx + width / 2, cy + half), fill=colour)
    elif shape == "ring":
        draw.ellipse(box, outline=colour, width=width)
    elif shape == "diamond":
        draw.polygon([(cx, cy - half), (cx + half, cy), (cx, cy + half), (cx - half, cy)], fill=colour)
    elif shape == "stripes":
        for y in range(int(cy - half), int(cy + half), 2 * width):
            draw.rectangle((cx - half, y, cx + half, y + width - 1), fill=colour)
    else:  # bar
        draw.rectangle((cx - half, cy - width, cx + half, cy + width), fill=colour)
    return img


def generate_dataset(
    root: str | Path,
    num_classes: int = 5,
    images_per_class: dict[str, int] | None = None,
    image_size: int = 64,
    seed: int = 0,
) -> Path:
    """Create (or reuse, when its settings match) the synthetic data set at `root`; return `root`.

    Written into a temporary folder beside `root` and renamed into place, so a killed run never
    leaves a half-made data set behind.
    """
    root = Path(root)
    counts = dict(images_per_class or {"train": 30, "valid": 10, "test": 10})
    settings = {
        "version": FORMAT_VERSION,
        "num_classes": num_classes,
        "images_per_class": counts,
        "image_size": image_size,
        "seed": seed,
    }
    marker = root / "synthetic.json"
    if marker.is_file() and json.loads(marker.read_text()) == settings:
        return root
    if root.exists() and not marker.is_file() and any(root.iterdir()):
        raise FileExistsError(
            f"{root} holds files but no synthetic.json: it is not a generated data set, so it is never "
            "replaced by one. Point the generator at an empty or new folder."
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        rng = random.Random(seed)
        for index in range(num_classes):
            shape = SHAPES[index % len(SHAPES)]
            hue = (index * 0.618034) % 1.0  # golden-ratio steps keep neighbouring classes' colours apart
            name = f"{index + 1:03d}.Synthetic_{shape}_{index + 1}"
            for split, n in counts.items():
                class_dir = tmp / split / name
                class_dir.mkdir(parents=True)
                for i in range(n):
                    _draw(shape, hue, image_size, rng).save(class_dir / f"{name}_{i:04d}.jpg", quality=90)
        (tmp / "synthetic.json").write_text(json.dumps(settings, indent=2))
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
