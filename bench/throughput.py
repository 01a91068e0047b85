"""Training throughput of graft's loop against a minimal hand-written PyTorch loop, and the
orchestration overhead of a demo run.

1. Loop: the same model (lenet_bn, width 32), data (builtin:mnist, 28x28 uint8 resident on the
   device), batch size (128, the pretrain default) and optimiser (AdamW); augmentation off in both.
   The hand loop only trains; graft's `fit` also validates on a 10% holdout each epoch (that
   picks the best epoch) and keeps the best weights. Two ratios against the hand loop, medians
   of --repeats: end to end (fit's whole wall time, validation included) and training only
   (fit's time in training batches, its `train_seconds`); the goal (>= 0.95) is for the loop
   itself, the training-only ratio. Each repeat runs both loops, in alternating order (ABBA), so
   a drift in machine speed does not favour either. On CUDA both loops use bf16 autocast and channels_last, and --compile compiles
   both; the achieved FLOP/s (3 x forward FLOPs per trained image) is printed against --peak-tflops
   (default: the bf16 dense peak of a known GPU).
2. Orchestration: `graft run` with the e2e quick config (pretrain 3 epochs on 2,500 images,
   fine-tuning epoch_scale 0.3, four strategies) in a fresh state folder; end-to-end wall time
   of the ZenML run (and of the whole CLI process) against the sum of the steps' durations read
   from the ZenML run (goal: overhead <= 15%).

    python bench/throughput.py [--repeats 5] [--epochs 2] [--device auto] [--compile] [--skip-pipeline]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0}


def load_images(device):
    from graft.data.sources import load_dataset

    dataset = load_dataset("builtin:mnist", "source", 28, 20, 1)
    count = len(dataset)
    holdout = count // 10
    return (
        dataset.images[holdout:].to(device), dataset.labels[holdout:].to(device),
        dataset.images[:holdout].to(device), dataset.labels[:holdout].to(device), dataset.num_classes,
    )


def build_model(num_classes, device, seed=0):
    import torch

    from graft.models.architectures import ArchitectureSpec, build_classifier

    torch.manual_seed(seed)
    return build_classifier(ArchitectureSpec(architecture="lenet_bn", num_classes=num_classes, width=32)).to(device)


def hand_loop(images, labels, num_classes, device, epochs, batch_size, compute, mean, std) -> float:
    """The minimal loop: shuffle, slice, scale, forward, loss, backward, step. Images per second."""
    import torch
    import torch.nn.functional as F

    model = build_model(num_classes, device)
    cuda = device.type == "cuda"
    if cuda and compute.channels_last:
        model.to(memory_format=torch.channels_last)
    trained = torch.compile(model) if compute.compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4, fused=cuda or None)
    generator = torch.Generator().manual_seed(0)
    count = images.shape[0]
    seen = 0
    synchronize(device)
    started = time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(count, generator=generator).to(device)
        for start in range(0, count, batch_size):
            index = order[start : start + batch_size]
            inputs = (images[index].float().div_(255.0) - mean) / std
            if cuda and compute.channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and compute.bf16_autocast):
                logits = trained(inputs)
            loss = F.cross_entropy(logits.float(), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += index.numel()
    synchronize(device)
    return seen / (time.perf_counter() - started)


def graft_loop(images, labels, val_images, val_labels, num_classes, device, epochs, batch_size, compute, preprocessing):
    """Images per second of ``fit``: end to end, and in its training batches only."""
    import torch

    from graft.training.loop import TrainingData, fit
    from graft.training.phases import Phase

    model = build_model(num_classes, device)
    phase = Phase("pretrain", epochs, [{"params": list(model.parameters()), "lr": 3e-3, "weight_decay": 5e-4}])
    result = fit(
        model, TrainingData(images, labels, val_images, val_labels), [phase], preprocessing,
        batch_size=batch_size, patience=epochs, generator=torch.Generator().manual_seed(0), compute=compute,
    )
    synchronize(device)
    return result.images_seen / result.seconds, result.images_seen / result.train_seconds, result.val_seconds


def synchronize(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_flops_per_image(num_classes, device) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(num_classes, device)
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(8, 1, 28, 28, device=device))
    return 3.0 * counter.get_total_flops() / 8  # backward costs about twice the forward


def bench_loop(args) -> None:
    import torch

    from graft.training.settings import ComputeConfig
    from graft.data.preprocessing import PreprocessingSpec
    from graft.training.devices import resolve_device

    os.environ["GRAFT_PROGRESS"] = "0"
    device = resolve_device(args.device)
    compute = ComputeConfig(compile=args.compile)
    images, labels, val_images, val_labels, num_classes = load_images(device)
    mean, std = 0.1307, 0.3081
    preprocessing = PreprocessingSpec(frame_size=28, content_box=20, channels=1, mean=mean, std=std)
    batch = args.batch_size
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or platform.machine()}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, {images.shape[0]} training images, batch {batch}, "
          f"{args.epochs} epochs per measurement, compile={args.compile}")
    hand_loop(images, labels, num_classes, device, 1, batch, compute, mean, std)  # warm-up (and compile)
    graft_loop(images, labels, val_images, val_labels, num_classes, device, 1, batch, compute, preprocessing)
    hand, end_to_end, training_only, validation = [], [], [], []

    def measure_hand():
        hand.append(hand_loop(images, labels, num_classes, device, args.epochs, batch, compute, mean, std))

    def measure_graft():
        rates = graft_loop(images, labels, val_images, val_labels, num_classes, device, args.epochs, batch, compute, preprocessing)
        for values, value in zip((end_to_end, training_only, validation), rates):
            values.append(value)

    for repeat in range(args.repeats):
        order = (measure_hand, measure_graft) if repeat % 2 == 0 else (measure_graft, measure_hand)
        for measure in order:
            measure()
        print(f"  repeat {repeat + 1} ({'hand first' if repeat % 2 == 0 else 'graft first'}): hand {hand[-1]:.0f} img/s; "
              f"graft end to end {end_to_end[-1]:.0f} img/s (ratio {end_to_end[-1] / hand[-1]:.3f}), "
              f"training only {training_only[-1]:.0f} img/s (ratio {training_only[-1] / hand[-1]:.3f}), "
              f"validation {validation[-1]:.2f} s")
    end_to_end_ratios = [o / h for o, h in zip(end_to_end, hand)]
    training_ratios = [o / h for o, h in zip(training_only, hand)]
    per_repeat = lambda ratios: ", ".join(f"{r:.3f}" for r in ratios)  # noqa: E731
    print(f"hand-written loop (trains only):         median {statistics.median(hand):.0f} images/s")
    print(f"graft fit, end to end (incl. validation): median {statistics.median(end_to_end):.0f} images/s, "
          f"of which validation {statistics.median(validation):.2f} s ({args.epochs} validations)")
    print(f"graft fit, training batches only:         median {statistics.median(training_only):.0f} images/s")
    print(f"ratio graft/hand, end to end:    median {statistics.median(end_to_end_ratios):.3f} (per repeat {per_repeat(end_to_end_ratios)})")
    print(f"ratio graft/hand, training only: median {statistics.median(training_ratios):.3f} "
          f"(per repeat {per_repeat(training_ratios)}; goal >= 0.95)")
    flops = training_flops_per_image(num_classes, device)
    achieved = flops * statistics.median(end_to_end)
    peak = args.peak_tflops
    if peak is None and device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((value for key, value in PEAK_BF16_TFLOPS.items() if key in name), None)
    line = f"training FLOPs/image {flops / 1e6:.1f} M; achieved by graft fit end to end {achieved / 1e9:.2f} GFLOP/s"
    if peak:
        line += f" = {100 * achieved / (peak * 1e12):.2f}% of {peak:.0f} TFLOP/s peak"
    print(line)


def bench_pipeline() -> None:
    import yaml

    sys.path.insert(0, str(REPO / "tests" / "e2e"))
    from helpers import write_config

    state = Path(tempfile.mkdtemp(prefix="graft-bench-throughput-"))
    config = write_config(state / "quick.yaml", "bench-throughput")
    env = {**os.environ, "GRAFT_HOME": str(state), "GRAFT_PROGRESS": "0"}
    env.pop("GRAFT_TRACKING_URI", None)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "graft.cli", "run", "-c", str(config), "--no-cache"], cwd=REPO, env=env, capture_output=True, text=True)
    process_wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"graft run failed:\n{result.stderr[-3000:]}")
    os.environ.update({"GRAFT_HOME": str(state)})
    from graft.paths import configure_environment

    configure_environment()
    from zenml.client import Client

    run = Client().get_pipeline_run(Client().list_pipeline_runs(sort_by="desc:created", size=1).items[0].id)
    steps = {name: (step.end_time - step.start_time).total_seconds() for name, step in run.steps.items()}
    step_sum = sum(steps.values())
    run_wall = (run.end_time - run.start_time).total_seconds()
    print(f"demo run (quick config: {yaml.safe_dump(yaml.safe_load(config.read_text())['pretrain'], default_flow_style=True).strip()} "
          f"finetune epoch_scale 0.3), fresh state, no cache:")
    print("  steps: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in steps.items()))
    print(f"  sum of step durations {step_sum:.1f} s; ZenML run wall {run_wall:.1f} s -> overhead {100 * (run_wall / step_sum - 1):.1f}% (goal <= 15%)")
    print(f"  whole `graft run` process {process_wall:.1f} s (imports, store and stack setup, summary) -> {100 * (process_wall / step_sum - 1):.1f}% over the steps")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--skip-pipeline", action="store_true")
    args = parser.parse_args()
    bench_loop(args)
    if not args.skip_pipeline:
        bench_pipeline()


if __name__ == "__main__":
    main()
