"""Data bigger than memory: peak RSS, ingest speed and training speed from shards, in one run.

1. Peak RSS of ingest plus one training epoch on synthetic 224x224 RGB JPEG ImageFolders of
   --sizes images, each size in a fresh process (the folder is written beforehand, by another
   process). The epoch trains a deliberately cheap model (8x8 average pooling and one linear layer)
   on the 224x224 images read from the shards, so it measures the data path, not convolutions.
2. Cold ingest images/s of those JPEGs (fingerprint, decode, frame, shards, index), and re-ingest
   after one changed file as a percentage of the cold time (at the middle size); both timed after
   torchvision (which the photo resize uses) is imported, both with the digest memo the pipeline's
   steps use (files whose stat is unchanged are not hashed again).
3. Training images per CPU second reading the same images from shards and from an in-memory tensor, alternated
   (shards, tensor, shards, tensor, ...; the best of each) for lenet_bn at 28x28 and resnet18 at
   224x224, and the demo's fine-tuning (the strategies of configs/transfer.yaml on
   builtin:digits, --demo-epoch-scale of their epochs) the same way.
4. On paper, from the measured per-image costs: disk bytes, RSS and ingest time for 1,000,000 images
   of 224x224, and the read throughput one loader process reaches, as the data-side bound on epochs
   per hour of a 4-GPU node.

    python bench/scale.py [--sizes 4000 16000 64000] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZE = 224
CLASSES = 10
REPEATS = 3  # alternated runs of each reading, the best kept: other work on the machine only slows runs down


def write_jpegs(root: Path, count: int) -> None:
    """``count`` distinct 224x224 RGB JPEGs in CLASSES folders: colour fields with shifted noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(count)
    ramp = np.linspace(0, 1, SIZE, dtype=np.float32)
    shading = (0.6 + 0.4 * ramp[:, None, None] * ramp[None, :, None]).astype(np.float32)
    noise = rng.normal(0, 12, (2 * SIZE, 2 * SIZE, 3)).astype(np.float32)
    for index in range(count):
        folder = root / f"c{index % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        colour = rng.uniform(40, 215, 3).astype(np.float32)
        top, left = rng.integers(0, SIZE, 2)
        pixels = np.clip(colour * shading + noise[top : top + SIZE, left : left + SIZE], 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:07d}.jpg", quality=90)


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def ingest_and_epoch(folder: Path, cache: Path, change_one: bool) -> dict:
    """In this (fresh) process: cold ingest, optionally a re-ingest after one changed file, then one epoch."""
    import torch

    from graft.data.catalog import read_catalog
    from graft.data.ingest import Geometry, decode_catalog
    from graft.data.sources import to_dataset

    import torchvision.transforms.v2.functional  # noqa: F401  (imported before timing: about 2.5 s here, once per process)

    geometry = Geometry(SIZE, SIZE, 3, "photo")
    memo = cache.parent / "digest-memo"  # as the pipeline's steps do: unchanged files are not hashed again
    started = time.perf_counter()
    decoded = decode_catalog(read_catalog(folder, "bench"), geometry, cache, memo_dir=memo)
    cold = time.perf_counter() - started
    report = {"images": len(decoded.images), "cold_seconds": cold, "rss_after_ingest": peak_rss_bytes(),
              "jpeg_bytes_per_image": sum(record.bytes for record in decoded.records) / max(1, len(decoded.records))}
    if change_one:
        victim = sorted((folder / "c0").iterdir())[0]
        victim.write_bytes(victim.read_bytes() + b"\0")  # other bytes, same picture
        started = time.perf_counter()
        decode_catalog(read_catalog(folder, "bench"), geometry, cache, memo_dir=memo)
        report["reingest_seconds"] = time.perf_counter() - started
    dataset = to_dataset(decoded, "bench")
    report["train_images_per_second"] = one_epoch(dataset.images, dataset.labels, "pooled_linear", 64)
    report["peak_rss"] = peak_rss_bytes()
    report["peak_rss_decode_workers"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    shard_bytes = sum(shard.bytes for shard in decoded.images.shards)
    report["disk_bytes_per_image"] = shard_bytes / max(1, len(decoded.images))
    import tracemalloc

    tracemalloc.start()  # what the index and records of a data version hold in Python, per image
    again = decode_catalog(read_catalog(folder, "bench"), geometry, cache, memo_dir=memo)
    report["index_bytes_per_image"] = tracemalloc.get_traced_memory()[1] / max(1, len(again.records))
    tracemalloc.stop()
    del torch
    return report


def pooled_linear(channels: int):
    """A deliberately cheap model for the RSS figure: 8x8 average pooling, then one linear layer, so
    the epoch's time and memory are those of reading the data, not of convolutions at 224 px."""
    from torch import nn

    return nn.Sequential(nn.AvgPool2d(8), nn.Flatten(), nn.Linear(channels * (SIZE // 8) ** 2, CLASSES))


def one_epoch(images, labels, architecture: str, batch_size: int, width: int = 32, epochs: int = 1) -> float:
    """Training images per CPU second of this process over ``epochs`` epochs of ``fit`` over ``images``
    (validation on 8 images). CPU seconds, not wall time: on a shared machine the wall time of one
    run varies several times over, its CPU time much less."""
    import torch

    from graft.data.dataset import subset
    from graft.data.preprocessing import PreprocessingSpec
    from graft.models.architectures import ArchitectureSpec, build_classifier
    from graft.training.loop import TrainingData, fit
    from graft.training.phases import Phase

    channels, size = images.shape[1], images.shape[-1]
    torch.manual_seed(0)
    if architecture == "pooled_linear":
        model = pooled_linear(channels)
    else:
        model = build_classifier(ArchitectureSpec(architecture=architecture, num_classes=CLASSES, in_channels=channels,
                                                  width=width, frame_size=size))
    spec = PreprocessingSpec(frame_size=size, content_box=size, channels=channels, mean=0.5, std=0.25)
    phase = Phase("train", epochs, [{"params": list(model.parameters()), "lr": 1e-3}])
    few = torch.arange(8)
    data = TrainingData(images, labels, subset(images, few), labels[few])
    started = time.process_time()
    result = fit(model, data, [phase], spec, batch_size=batch_size, patience=epochs, generator=torch.Generator().manual_seed(0))
    return result.images_seen / (time.process_time() - started)


def synthetic_shards(folder: Path, count: int, channels: int, size: int):
    """``count`` random uint8 images written as shards (no JPEG step), and the same in a tensor."""
    import numpy as np
    import torch

    from graft.data.shards import ShardImages, ShardPool, ShardWriter

    rng = np.random.default_rng(0)
    pool = ShardPool(folder)
    writer = ShardWriter(pool, (channels, size, size))
    locations = []
    for start in range(0, count, 512):
        block = rng.integers(0, 256, (min(512, count - start), channels, size, size), dtype=np.uint8)
        locations.extend(writer.add(block))
    writer.flush()
    shards = ShardImages(str(folder), writer.shards, [s for s, _ in locations], [o for _, o in locations], (channels, size, size))
    labels = torch.from_numpy(rng.integers(0, CLASSES, count)).long()
    return shards, shards[:], labels


def speed_pair(folder: Path, name: str, count: int, channels: int, size: int, architecture: str, batch: int,
               epochs: int, width: int = 32) -> dict:
    shards, tensor, labels = synthetic_shards(folder / name, count, channels, size)
    rates = {"shards": [], "tensor": []}
    for _ in range(REPEATS):
        rates["shards"].append(one_epoch(shards, labels, architecture, batch, width, epochs))
        rates["tensor"].append(one_epoch(tensor, labels, architecture, batch, width, epochs))
    best = {key: max(values) for key, values in rates.items()}
    return {"name": name, "images": count, **best, "ratio": best["shards"] / best["tensor"]}


def demo_finetune_pair(folder: Path, epoch_scale: float) -> dict:
    """The demo's fine-tuning strategies on builtin:digits, target in shards vs in a tensor: CPU seconds."""
    import torch

    from graft.config import load_config
    from graft.data.dataset import ImageDataset
    from graft.data.ingest import Geometry
    from graft.data.sources import decode_spec, to_dataset
    from graft.data.splits import split_target
    from graft.pretraining import untrained_source
    from graft.stage_settings import FinetuneSettings, PretrainSettings
    from graft.transfer import train_candidate

    config = load_config(REPO / "configs" / "transfer.yaml")
    config = config.model_copy(update={"device": "cpu", "finetune": config.finetune.model_copy(update={"epoch_scale": epoch_scale})})
    data = config.data
    sharded = to_dataset(decode_spec(data.target, "target", Geometry.of(data), folder / "demo"), data.target)
    in_memory = ImageDataset(**{**sharded.__dict__, "images": sharded.images[:]})
    source = untrained_source(PretrainSettings.of(config)).bundle
    seconds = {"shards": [], "tensor": []}
    for _ in range(REPEATS):
        for key, dataset in (("shards", sharded), ("tensor", in_memory)):
            splits = split_target(dataset, data.val_fraction, data.test_fraction, data.labels_per_class, data.split_seed, config.seed)
            started = time.process_time()
            for strategy in config.finetune.strategies:
                train_candidate(strategy, source, splits, FinetuneSettings.of(config))
            seconds[key].append(time.process_time() - started)
    best = {key: min(values) for key, values in seconds.items()}
    del torch
    return {"shards_seconds": best["shards"], "tensor_seconds": best["tensor"], "ratio": best["shards"] / best["tensor"],
            "strategies": len(config.finetune.strategies)}


def read_rate(folder: Path) -> float:
    """Images/s one process gathers in shuffled batches of 256 from 224x224 shards read per image."""
    import numpy as np

    from graft.data import shards as shard_module

    shard_module.MAPPED_LIMIT_BYTES = 0  # as for data bigger than memory: pread, nothing mapped
    images, _, _ = synthetic_shards(folder / "read", 2048, 3, SIZE)
    images = shard_module.ShardImages.from_state(images.to_state())
    order = np.random.default_rng(1).permutation(len(images))
    started = time.perf_counter()
    for start in range(0, len(order), 256):
        images.gather(order[start : start + 256])
    return len(order) / (time.perf_counter() - started)


def child(arguments: list[str]) -> dict:
    completed = subprocess.run([sys.executable, __file__, *arguments], capture_output=True, text=True, cwd=REPO,
                               env={**os.environ, "GRAFT_PROGRESS": "0"})
    if completed.returncode != 0:
        sys.exit(f"{' '.join(arguments)} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def report(args, rss: list[dict], speeds: list[dict], demo: dict, rate: float) -> None:
    gb = 1e9
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}; "
          f"load average at the end {os.getloadavg()[0]:.1f}")
    print("\n1. peak RSS of ingest + one training epoch (224x224 RGB JPEGs, pooled linear model, batch 64)")
    for row in rss:
        print(f"   {row['images']:>7} images: peak RSS {row['peak_rss'] / gb:.2f} GB (after ingest {row['rss_after_ingest'] / gb:.2f} GB, "
              f"decode workers {row['peak_rss_decode_workers'] / gb:.2f} GB); dataset {row['images'] * row['disk_bytes_per_image'] / gb:.2f} GB "
              f"in shards; epoch {row['train_images_per_second']:.0f} images/s")
    ratio = rss[-1]["peak_rss"] / rss[0]["peak_rss"]
    print(f"   RSS at {rss[-1]['images']} / RSS at {rss[0]['images']} images: {ratio:.2f}  (target <= 1.2: {'met' if ratio <= 1.2 else 'NOT met'})")
    cold = max(rss, key=lambda row: row["images"])
    cold_rate = cold["images"] / cold["cold_seconds"]
    print(f"\n2. cold ingest of {cold['images']} JPEGs: {cold['cold_seconds']:.1f} s, {cold_rate:.0f} images/s  "
          f"(target >= 1000: {'met' if cold_rate >= 1000 else 'NOT met'})")
    middle = next(row for row in rss if "reingest_seconds" in row)
    share = middle["reingest_seconds"] / middle["cold_seconds"]
    print(f"   re-ingest after one changed file ({middle['images']} images): {middle['reingest_seconds']:.2f} s = "
          f"{100 * share:.1f} % of cold  (target <= 5 %: {'met' if share <= 0.05 else 'NOT met'})")
    print(f"\n3. training images per CPU second, shards vs in-memory tensor (best of {REPEATS} alternated runs each)")
    for row in speeds:
        print(f"   {row['name']} ({row['images']} images): shards {row['shards']:.1f}, tensor {row['tensor']:.1f}, "
              f"ratio {row['ratio']:.3f}  (target >= 0.95: {'met' if row['ratio'] >= 0.95 else 'NOT met'})")
    print(f"   demo fine-tuning ({demo['strategies']} strategies, builtin:digits, epoch_scale {args.demo_epoch_scale}): shards {demo['shards_seconds']:.1f} CPU s, "
          f"tensor {demo['tensor_seconds']:.1f} CPU s, slowdown {100 * (demo['ratio'] - 1):+.1f} %  (target <= +5 %: "
          f"{'met' if demo['ratio'] <= 1.05 else 'NOT met'})")
    per_image = sum(row["disk_bytes_per_image"] for row in rss) / len(rss)
    index_bytes = max(row["index_bytes_per_image"] for row in rss)
    largest = max(rss, key=lambda row: row["images"])
    million = 1_000_000
    print("\n4. on paper: 1,000,000 images of 224x224 RGB on a 4-GPU node (from the figures above)")
    jpeg = sum(row["jpeg_bytes_per_image"] for row in rss) / len(rss)
    print(f"   disk in shards: {million * per_image / gb:.0f} GB ({per_image:.0f} bytes per image; the JPEGs: {jpeg:.0f} bytes "
          f"per image, {million * jpeg / gb:.0f} GB)")
    print(f"   peak RSS: {largest['peak_rss'] / gb:.2f} GB at {largest['images']} images (data past the mapped limit) + "
          f"{index_bytes:.0f} bytes of index and records per image -> {(largest['peak_rss'] + index_bytes * million) / gb:.2f} GB "
          f"per process that holds the index")
    print(f"   cold ingest at {cold_rate:.0f} images/s on these 2 cores: {million / cold_rate / 3600:.2f} h "
          f"(decoding scales with cores: {million / cold_rate / 60 * 2 / 32:.0f} min on 32 cores)")
    print(f"   shard reads, one loader process, shuffled 224x224 batches read per image: {rate:.0f} images/s; "
          f"with 4 loader processes per GPU and 4 GPUs the data side can feed {16 * rate:.0f} images/s, "
          f"{16 * rate * 3600 / million:.1f} epochs per hour; the GPU's own training speed is the other bound (not measured here)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4000, 16000, 64000])
    parser.add_argument("--work", type=Path, default=None, help="folder for the JPEGs and shards (default: a temporary one)")
    parser.add_argument("--demo-epoch-scale", type=float, default=0.2)
    parser.add_argument("--lenet-images", type=int, default=8192)
    parser.add_argument("--resnet-images", type=int, default=96)
    parser.add_argument("--change-one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--role", default="main", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["GRAFT_PROGRESS"] = "0"
    if args.role == "write":
        write_jpegs(args.folder, args.sizes[0])
        print(json.dumps({}))
        return
    if args.role == "rss":
        print(json.dumps(ingest_and_epoch(args.folder / "jpegs", args.folder / "cache", change_one=args.change_one)))
        return
    with tempfile.TemporaryDirectory(prefix="graft-scale-", dir=args.work) as work:
        run(args, Path(work))


def run(args, work: Path) -> None:
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    rss = []
    middle = sorted(args.sizes)[len(args.sizes) // 2]
    for size in sorted(args.sizes):
        folder = work / f"size{size}"
        child(["--role", "write", "--sizes", str(size), "--folder", str(folder / "jpegs")])
        row = child(["--role", "rss", "--folder", str(folder), *(["--change-one"] if size == middle else [])])
        rss.append(row)
        print(f"size {size}: {json.dumps(row)}", flush=True)
        subprocess.run(["rm", "-rf", str(folder)], check=True)
    speeds = [
        speed_pair(work, "lenet_bn 28x28", args.lenet_images, 1, 28, "lenet_bn", 128, epochs=2),
        speed_pair(work, "resnet18 224x224", args.resnet_images, 3, SIZE, "resnet18", 16, epochs=1),
    ]
    demo = demo_finetune_pair(work, args.demo_epoch_scale)
    report(args, rss, speeds, demo, read_rate(work))


if __name__ == "__main__":
    main()
