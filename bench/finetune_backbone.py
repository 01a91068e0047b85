"""Fine-tuning throughput on an ImageNet-sized backbone: graft's training loop against a
hand-written torchvision loop, same model, data, batch size and optimiser.

The model is torchvision's ResNet-50 (``--architecture``) in graft's Classifier shape, with a new
10-class head, at 224x224 RGB; every parameter trains (parameter transfer). The data are
``--images`` random uint8 images in host memory (pinned on CUDA), each batch moved to the device, stored at the crop size so that
neither loop crops; augmentation is off in both. The hand loop: shuffle, slice, scale and
normalise per channel, forward, loss, backward, AdamW step. graft's ``fit`` also keeps the best
weights and validates once per epoch on ``--val-images`` images; its training-only rate (its
``train_seconds``) is the loop's figure, its end-to-end rate is printed too. Each repeat runs
both loops in alternating order (ABBA) after one untimed warm-up batch each; the ratio is the
median over ``--repeats``, all in one run. The weights are random: throughput does not depend on
their values, and nothing is downloaded.

Wall-clock rates move with whatever else the machine runs, so each repeat also measures the CPU
time the process spent per image (``time.process_time``; graft's figure includes its per-epoch
validation and best-weight copy, so it is a conservative ratio). With ``--threads 1`` no thread
waits on another and that CPU-time ratio is the loop's own overhead, independent of the load.

On CUDA (``--device cuda``) both loops run in bf16 autocast with channels-last model and batches
(graft's compute defaults), and the script also prints graft's achieved FLOP/s (3 x the forward
FLOPs per image) as a fraction of the GPU's bf16 dense peak (``--peak-tflops`` for unknown GPUs).

    python bench/finetune_backbone.py [--architecture resnet50] [--repeats 3] [--images 48] [--batch-size 16]
                                      [--threads N] [--device cpu|cuda] [--peak-tflops T]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.throughput import PEAK_BF16_TFLOPS, synchronize  # noqa: E402  (after the path insert)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def build(architecture: str, size: int, device, seed: int = 0):
    import torch

    from graft.models.architectures import ArchitectureSpec, build_classifier

    torch.manual_seed(seed)
    return build_classifier(ArchitectureSpec(architecture=architecture, num_classes=10, in_channels=3, frame_size=size)).to(device)


def hand_loop(model, images, labels, batch_size, device) -> tuple[float, float]:
    import contextlib

    import torch
    import torch.nn.functional as F

    cuda = device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()

    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    if cuda:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(0)
    count, seen = images.shape[0], 0
    model.train()
    synchronize(device)
    started, cpu_started = time.perf_counter(), time.process_time()
    order = torch.randperm(count, generator=generator)
    for start in range(0, count, batch_size):
        index = order[start : start + batch_size]
        batch = images[index].to(device, non_blocking=True)
        inputs = (batch.float().div_(255.0) - mean) / std
        if cuda:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with autocast:
            logits = model(inputs)
        loss = F.cross_entropy(logits.float(), labels[index].to(device, non_blocking=True))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += index.numel()
    synchronize(device)
    return seen / (time.perf_counter() - started), seen / (time.process_time() - cpu_started)


def graft_loop(model, images, labels, val_images, val_labels, batch_size, size) -> tuple[float, float, float]:
    import torch

    from graft.data.preprocessing import PreprocessingSpec
    from graft.training.loop import TrainingData, fit
    from graft.training.phases import Phase

    spec = PreprocessingSpec(frame_size=size, channels=3, mean=MEAN, std=STD, geometry="photo", crop_size=size)
    phase = Phase("finetune", 1, [{"params": list(model.parameters()), "lr": 1e-3, "weight_decay": 5e-4}])
    cpu_started = time.process_time()
    result = fit(
        model, TrainingData(images, labels, val_images, val_labels), [phase], spec,
        batch_size=batch_size, patience=1, generator=torch.Generator().manual_seed(0),
    )
    cpu_rate = result.images_seen / (time.process_time() - cpu_started)
    return result.images_seen / result.train_seconds, result.images_seen / result.seconds, cpu_rate


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--architecture", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=48, help="training images per loop and repeat")
    parser.add_argument("--val-images", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's own choice)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's bf16 dense peak (known GPUs: looked up)")
    return parser.parse_args()


def one_repeat(repeat: int, models, data, args, device) -> dict[str, float]:
    images, labels, val_images, val_labels = data
    rates: dict[str, float] = {}
    for which in (("hand", "graft") if repeat % 2 == 0 else ("graft", "hand")):
        if which == "hand":
            rates["hand"], rates["hand_cpu"] = hand_loop(models[0], images, labels, args.batch_size, device)
        else:
            rates["graft"], rates["graft_e2e"], rates["graft_cpu"] = graft_loop(
                models[1], images, labels, val_images, val_labels, args.batch_size, args.size)
    return rates


def peak_line(model, rate: float, args, device) -> str:
    """graft's achieved training FLOP/s against the GPU's bf16 dense peak."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, args.size, args.size, device=device))
    achieved = 3.0 * counter.get_total_flops() * rate
    name = torch.cuda.get_device_name(device)
    peak = args.peak_tflops or next((value for key, value in PEAK_BF16_TFLOPS.items() if key in name), None)
    share = f" = {100 * achieved / (peak * 1e12):.2f}% of the {peak:.0f} TFLOP/s bf16 dense peak" if peak else ""
    return f"{name}: graft trains {rate:.1f} img/s, {achieved / 1e12:.2f} TFLOP/s{share}"


def main() -> None:
    args = parse_args()
    os.environ.setdefault("GRAFT_PROGRESS", "0")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (args.images, 3, args.size, args.size), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, 10, (args.images,), generator=generator)
    if device.type == "cuda":
        images, labels = images.pin_memory(), labels.pin_memory()
    data = (images, labels, images[: args.val_images].clone(), labels[: args.val_images].clone())
    print(f"{args.architecture} {args.size}x{args.size}, batch {args.batch_size}, {args.images} images per loop, "
          f"{args.repeats} repeats, {device}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    models = (build(args.architecture, args.size, device), build(args.architecture, args.size, device))
    hand_loop(models[0], images[: args.batch_size], labels[: args.batch_size], args.batch_size, device)  # warm-up
    graft_loop(models[1], images[: args.batch_size], labels[: args.batch_size], data[2][:2], data[3][:2], args.batch_size, args.size)
    ratios: dict[str, list[float]] = {"training": [], "end to end": [], "cpu": []}
    graft_rates = []
    for repeat in range(args.repeats):
        rates = one_repeat(repeat, models, data, args, device)
        ratios["training"].append(rates["graft"] / rates["hand"])
        ratios["end to end"].append(rates["graft_e2e"] / rates["hand"])
        ratios["cpu"].append(rates["graft_cpu"] / rates["hand_cpu"])
        graft_rates.append(rates["graft"])
        print(f"repeat {repeat + 1}: hand {rates['hand']:.2f} img/s, graft {rates['graft']:.2f} img/s training "
              f"({rates['graft_e2e']:.2f} end to end), ratio {ratios['training'][-1]:.3f}; per CPU second: hand "
              f"{rates['hand_cpu']:.2f}, graft {rates['graft_cpu']:.2f} img, ratio {ratios['cpu'][-1]:.3f}", flush=True)
    median = {name: statistics.median(values) for name, values in ratios.items()}
    print(f"median ratio graft/hand, training: {median['training']:.3f} (end to end, with validation and "
          f"best-weight keeping: {median['end to end']:.3f}); images per CPU second, end to end: {median['cpu']:.3f}; "
          f"load average now {os.getloadavg()[0]:.1f}")
    if device.type == "cuda":
        print(peak_line(models[1], statistics.median(graft_rates), args, device))


if __name__ == "__main__":
    main()
