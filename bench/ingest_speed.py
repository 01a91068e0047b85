"""Ingest speed: decode an ImageFolder of small PNGs, then read the same files back from the cache.

Writes N PNGs (MNIST digits, 28x28 grayscale, each a distinct file) into a temporary
ImageFolder tree, then times ``decode_catalog`` cold (fingerprint + decode + frame + cache
write) and warm (fingerprint + cache read). Target: at least 1,000 images/s cold on 2 cores.

    .venv/bin/python bench/ingest_speed.py [--images 10000] [--workers N] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from graft.data.builtin import load_mnist_5k  # noqa: E402
from graft.data.catalog import read_catalog  # noqa: E402
from graft.data.ingest import Geometry, decode_catalog, worker_count  # noqa: E402


def write_pngs(root: Path, count: int) -> None:
    from PIL import Image

    images, labels, names = load_mnist_5k()
    for index in range(count):
        source = images[index % len(images), 0].numpy().copy()
        source[0, index % 28] = (index // 28) % 256  # every file distinct, as in a real collection
        folder = root / names[int(labels[index % len(labels)])]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(source, mode="L").save(folder / f"{index:06d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=None, help="decode worker processes (default: one per core, at most 8)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    geometry = Geometry(frame_size=28, content_box=20, channels=1)
    cold, warm = [], []
    with tempfile.TemporaryDirectory(prefix="graft-ingest-bench-") as tmp:
        root = Path(tmp) / "images"
        write_pngs(root, args.images)
        for repeat in range(args.repeats):
            cache = Path(tmp) / f"cache-{repeat}"
            start = time.perf_counter()
            catalog = read_catalog(root, "bench")
            first = decode_catalog(catalog, geometry, cache, args.workers)
            cold.append(time.perf_counter() - start)
            start = time.perf_counter()
            catalog = read_catalog(root, "bench")
            second = decode_catalog(catalog, geometry, cache, args.workers)
            warm.append(time.perf_counter() - start)
            assert not first.from_cache and second.from_cache and torch_equal(first.images[:], second.images[:])
    workers = worker_count(args.workers)
    cold_rate = args.images / statistics.median(cold)
    warm_rate = args.images / statistics.median(warm)
    print(f"images: {args.images}  decode worker processes: {workers}  repeats: {args.repeats}")
    print(f"cold ingest (scan + fingerprint + decode + frame + cache write): median {statistics.median(cold):.2f} s = {cold_rate:,.0f} images/s")
    print(f"warm ingest (scan + fingerprint + cache read):                   median {statistics.median(warm):.2f} s = {warm_rate:,.0f} images/s")
    print(f"target >= 1,000 images/s cold: {'PASS' if cold_rate >= 1000 else 'FAIL'}")


def torch_equal(left, right) -> bool:
    import torch

    return bool(torch.equal(left, right))


if __name__ == "__main__":
    main()
