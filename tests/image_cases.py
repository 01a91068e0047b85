"""Small image files and folder layouts for the ingestion and data-gate tests.

Every builder writes real files (PNG, JPEG, BMP) into a folder the test owns, so the code under
test reads them exactly as it reads a user's data.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def noise_pixels(seed: int, size: int = 8, channels: int = 1) -> np.ndarray:
    """Random uint8 pixels: never constant, and distinct for distinct seeds."""
    rng = np.random.default_rng(seed)
    shape = (size, size) if channels == 1 else (size, size, channels)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def save_image(path: Path, pixels: np.ndarray, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **options)
    return path


def image_folder(root: Path, counts: dict[str, int], split: str | None = None, first_seed: int = 0, size: int = 8) -> list[Path]:
    """``root[/split]/<class>/<n>.png`` with ``counts[class]`` noise images each; seeds never repeat."""
    written = []
    seed = first_seed
    base = root / split if split else root
    for label, count in counts.items():
        for index in range(count):
            written.append(save_image(base / label / f"{index:04d}.png", noise_pixels(seed, size)))
            seed += 1
    return written


def split_image_folder(root: Path, counts: dict[str, dict[str, int]], size: int = 8) -> dict[str, list[Path]]:
    """``root/{train,val,test}/<class>/*.png``; ``counts[split][class]`` images, all different."""
    written = {}
    seed = 0
    for split, per_class in counts.items():
        written[split] = image_folder(root, per_class, split=split, first_seed=seed, size=size)
        seed += sum(per_class.values())
    return written


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def declared_size_png(path: Path, width: int, height: int) -> Path:
    """A 60-byte PNG whose header declares ``width`` x ``height`` grayscale pixels (a decompression bomb's header)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 64)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", pixels) + _png_chunk(b"IEND", b""))
    return path


def write_manifest(path: Path, rows: list[tuple], columns: tuple[str, ...] = ("path", "label", "split")) -> Path:
    import pandas as pd

    table = pd.DataFrame([row[: len(columns)] for row in rows], columns=list(columns))
    if path.suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path, index=False)
    return path


def digit_images(per_class: int, classes: int = 10, offset: int = 0) -> list[tuple[np.ndarray, int]]:
    """scikit-learn's 8x8 digits as uint8 pixels with their labels, ``per_class`` of each digit."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    chosen: dict[int, list] = {label: [] for label in range(classes)}
    seen: dict[int, int] = {label: 0 for label in range(classes)}
    for image, label in zip(digits.images, digits.target):
        label = int(label)
        if label >= classes or len(chosen[label]) >= per_class:
            continue
        seen[label] += 1
        if seen[label] <= offset:
            continue
        chosen[label].append((image * 255 / 16).round().astype(np.uint8))
    return [(pixels, label) for label in range(classes) for pixels in chosen[label]]
