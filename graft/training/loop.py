"""One training loop for pretraining and every transfer strategy.

Images stay uint8 (in shards on disk or in a tensor) and reach the training device a batch at a
time through a DataLoader (``graft.data.loading``); each batch is cast, augmented and normalised
there. Training runs in phases (e.g. linear probe, then fine-tune), each with its own
parameter groups; the weights with the best validation score are restored at the end.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from graft.data.dataset import Images, subset
from graft.data.loading import BatchPlan, ShareSampler, batch_loader, image_batches
from graft.data.preprocessing import PreprocessingSpec, normalise, standardise_
from graft.training import distributed
from graft.training.augment import BatchAugmenter
from graft.training.freezing import train_mode
from graft.training.phases import Phase, Regularizer
from graft.training.settings import ComputeConfig

PROGRESS_ENV = "GRAFT_PROGRESS"


@dataclass
class EpochRecord:
    phase: str
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    learning_rate: float


@dataclass
class TrainingResult:
    """``seconds`` is the whole fit; ``train_seconds`` and ``val_seconds`` are its time in training
    batches and in per-epoch validation (the rest is setup and keeping the best weights)."""

    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_val_accuracy: float = 0.0
    best_val_loss: float = math.inf
    seconds: float = 0.0
    images_seen: int = 0
    train_seconds: float = 0.0
    val_seconds: float = 0.0

    def history_dicts(self) -> list[dict]:
        return [asdict(record) for record in self.history]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainingResult":
        return cls(**{**values, "history": [EpochRecord(**record) for record in values["history"]]})


@dataclass
class TrainingData:
    """Labelled training and validation images: uint8 tensors or shard views, never moved whole."""

    train_images: Images
    train_labels: torch.Tensor
    val_images: Images
    val_labels: torch.Tensor


def progress_enabled() -> bool:
    return os.environ.get(PROGRESS_ENV, "1") != "0"


def predict_logits(
    model: nn.Module,
    images: Images,
    preprocessing: PreprocessingSpec,
    batch_size: int = 512,
    compute: ComputeConfig | None = None,
) -> torch.Tensor:
    """Logits for uint8 ``images`` (a tensor or shards, read a batch at a time), computed on the
    model's device, returned on the CPU.

    With ``compute``, on CUDA the forward passes use its bf16 autocast and channels_last, as
    training does; without it they run in full precision.
    """
    device = next(model.parameters()).device
    autocast = _autocast(device, compute) if compute is not None else contextlib.nullcontext()
    channels_last = compute is not None and _uses_channels_last(device, compute, images)
    switch_modes = not isinstance(model, torch.fx.GraphModule)  # exported graphs refuse .eval()
    was_training = model.training
    if switch_modes:
        model.eval()
    outputs = []
    with torch.inference_mode():
        for chunk in image_batches(images, batch_size, device):
            inputs = normalise(chunk.to(device, non_blocking=True), preprocessing)
            if channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            with autocast:
                outputs.append(model(inputs).float().cpu())
    if switch_modes:
        model.train(was_training)
    if not outputs:
        return torch.zeros((0, 0))
    # concatenated outside inference mode: callers get an ordinary tensor they may modify in place
    return torch.cat(outputs)


def _uses_channels_last(device: torch.device, compute: ComputeConfig, images: Images) -> bool:
    return device.type == "cuda" and compute.channels_last and len(images.shape) == 4


def _evaluate(
    model: nn.Module, images: Images, labels: torch.Tensor, preprocessing: PreprocessingSpec, compute: ComputeConfig
) -> tuple[float, float]:
    if images.shape[0] == 0:
        return math.inf, 0.0
    logits = predict_logits(model, images, preprocessing, compute=compute)
    targets = labels.cpu()
    return float(F.cross_entropy(logits, targets)), float((logits.argmax(dim=1) == targets).float().mean())


def _cosine_with_warmup(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def _autocast(device: torch.device, compute: ComputeConfig):
    if device.type == "cuda" and compute.bf16_autocast:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _evaluate_share(
    model: nn.Module, data: TrainingData, preprocessing: PreprocessingSpec, group: distributed.ProcessGroup, compute: ComputeConfig,
    device: torch.device,
) -> tuple[float, float]:
    """Validation loss and accuracy with each process scoring its share of the images."""
    count = data.val_images.shape[0]
    if not group.distributed:
        return _evaluate(model, data.val_images, data.val_labels, preprocessing, compute)
    if count == 0:
        return math.inf, 0.0
    start, stop = distributed.share(count, group)
    logits = predict_logits(model, subset(data.val_images, torch.arange(start, stop)), preprocessing, compute=compute)
    targets = data.val_labels[start:stop].cpu()
    totals = torch.tensor([float(F.cross_entropy(logits, targets, reduction="sum")) if stop > start else 0.0,
                           float((logits.argmax(dim=1) == targets).sum()) if stop > start else 0.0], dtype=torch.float64)
    # NCCL reduces CUDA tensors, gloo CPU ones: the training device fits both
    loss_sum, correct = distributed.sum_across(totals.to(device), group).tolist()
    return loss_sum / count, correct / count


def fit(
    model: nn.Module,
    data: TrainingData,
    phases: list[Phase],
    preprocessing: PreprocessingSpec,
    *,
    batch_size: int,
    patience: int,
    generator: torch.Generator,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    regularizer: Regularizer | None = None,
    label: str = "train",
    compute: ComputeConfig | None = None,
) -> TrainingResult:
    """Train ``model`` in place through ``phases``; restore the best-validation weights.

    ``augment`` gets float pixels in [0, 1] and may return them modified (one whose ``on_uint8``
    is true, the photo crop, gets the stored uint8 pixels before the cast); its result is normalised
    in place. Under torchrun (``graft.training.distributed``) every process runs this with the same
    arguments and joins the process group here, with the backend for the model's device;
    ``batch_size`` stays the global batch, split across the processes.
    """
    started = time.perf_counter()
    run = _start_fit(
        model, data, preprocessing, compute or ComputeConfig(),
        batch_size=batch_size, patience=patience, generator=generator, augment=augment, regularizer=regularizer, label=label,
    )
    for phase in phases:
        if phase.epochs > 0 and phase.param_groups:
            _train_phase(run, phase)
    run.restore_batch_norm()
    if run.channels_last:
        model.to(memory_format=torch.contiguous_format)
    model.load_state_dict(run.best_state)
    model.eval()
    run.result.seconds = time.perf_counter() - started
    return run.result


@dataclass
class _FitRun:
    """What every phase, epoch and batch of one ``fit`` shares."""

    model: nn.Module
    data: TrainingData
    preprocessing: PreprocessingSpec
    compute: ComputeConfig
    device: torch.device
    group: distributed.ProcessGroup
    channels_last: bool
    restore_batch_norm: Callable[[], None]
    sampler: ShareSampler
    loader: torch.utils.data.DataLoader
    batch_size: int
    patience: int
    generator: torch.Generator
    augment: Callable[[torch.Tensor], torch.Tensor] | None
    regularizer: Regularizer | None
    label: str
    best_state: dict[str, torch.Tensor]
    result: TrainingResult = field(default_factory=TrainingResult)
    epochs_run: int = 0


@dataclass
class _PhaseRun:
    """One phase's optimiser, learning-rate schedule, training wrapper and progress bar."""

    phase: Phase
    training_model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Callable[[int], float]
    base_rates: list[float]
    bar: tqdm
    steps_taken: int = 0

    def step(self) -> None:
        self.optimizer.step()
        self.steps_taken += 1
        _scale_learning_rates(self.optimizer, self.base_rates, self.schedule(self.steps_taken))


def _start_fit(
    model: nn.Module, data: TrainingData, preprocessing: PreprocessingSpec, compute: ComputeConfig, **options
) -> _FitRun:
    """Join the process group, set up the training batches' loader, the layout and BN sync."""
    device = next(model.parameters()).device
    group = distributed.init_from_env(device)
    count = data.train_images.shape[0]
    # a single image breaks BatchNorm in training mode: such a last batch is skipped
    sampler = ShareSampler(count, options["batch_size"], group.rank, group.world_size, min_batch=2 if count >= 2 else 1)
    loader = batch_loader(data.train_images, data.train_labels, sampler, device)
    channels_last = _uses_channels_last(device, compute, data.train_images)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    restore_batch_norm = distributed.synchronise_batch_norm(model, device) if group.distributed else (lambda: None)
    # filled with copy_ whenever validation improves: no allocation per improving epoch
    best_state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    return _FitRun(
        model, data, preprocessing, compute, device, group, channels_last, restore_batch_norm, sampler, loader,
        best_state=best_state, **options,
    )


def _start_phase(run: _FitRun, phase: Phase) -> _PhaseRun:
    model, device = run.model, run.device
    trainable = {id(parameter) for group_ in phase.param_groups for parameter in group_["params"]}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in trainable)
    # copies: the schedule rewrites each group's "lr", and the phase should keep its own rates
    optimizer = torch.optim.AdamW([dict(group_) for group_ in phase.param_groups], fused=device.type == "cuda" or None)
    steps_per_epoch = max(1, math.ceil(run.data.train_images.shape[0] / run.batch_size))
    # set directly rather than through LambdaLR, whose per-step bookkeeping shows in small models' step times
    schedule = _cosine_with_warmup(phase.epochs * steps_per_epoch, phase.warmup_fraction)
    base_rates = [group_["lr"] for group_ in optimizer.param_groups]
    _scale_learning_rates(optimizer, base_rates, schedule(0))
    # DDP registers gradient hooks for the parameters trainable now, hence one wrapper per phase
    training_model = distributed.wrap_for_data_parallel(model, device) if run.group.distributed else model
    if run.compute.compile:
        training_model = torch.compile(training_model)
    bar = tqdm(
        total=phase.epochs * steps_per_epoch,
        desc=f"{run.label}:{phase.name}",
        unit="batch",
        file=sys.stderr,
        disable=not (progress_enabled() and run.group.is_main),
        dynamic_ncols=True,
        mininterval=0.5 if sys.stderr.isatty() else 15.0,  # cron and pod logs: a line per 15 s, not a flood
        leave=True,
    )
    return _PhaseRun(phase, training_model, optimizer, schedule, base_rates, bar)


def _train_phase(run: _FitRun, phase: Phase) -> None:
    """The phase's epochs, stopping after ``patience`` epochs without a better validation score."""
    phase_run = _start_phase(run, phase)
    stale_epochs = 0
    for epoch in range(1, phase.epochs + 1):
        record = _run_epoch(run, phase_run)
        phase_run.bar.set_postfix_str(
            f"epoch {epoch}/{phase.epochs} loss {record.train_loss:.3f} acc {record.train_accuracy:.3f} "
            f"val_acc {record.val_accuracy:.3f}",
            refresh=False,
        )
        if _keep_if_best(run, record):
            stale_epochs = 0
        else:
            stale_epochs += 1
            if stale_epochs >= run.patience:
                break
    phase_run.bar.close()


def _run_epoch(run: _FitRun, phase_run: _PhaseRun) -> EpochRecord:
    """One pass over the training images, then validation; the epoch's record is added to the result."""
    run.epochs_run += 1
    epoch_started = time.perf_counter()
    train_loss_sum, correct, seen = _train_epoch(run, phase_run)
    validation_started = time.perf_counter()
    run.result.train_seconds += validation_started - epoch_started
    run.result.images_seen += seen
    val_loss, val_accuracy = _evaluate_share(run.model, run.data, run.preprocessing, run.group, run.compute, run.device)
    run.result.val_seconds += time.perf_counter() - validation_started
    record = EpochRecord(
        phase=phase_run.phase.name,
        epoch=run.epochs_run,
        train_loss=train_loss_sum / max(seen, 1),
        train_accuracy=correct / max(seen, 1),
        val_loss=val_loss,
        val_accuracy=val_accuracy,
        learning_rate=phase_run.optimizer.param_groups[0]["lr"],  # strategies list the head's group first
    )
    run.result.history.append(record)
    return record


def _train_epoch(run: _FitRun, phase_run: _PhaseRun) -> tuple[float, float, int]:
    """Summed training loss, correct predictions and images seen over the epoch, across processes."""
    count = run.data.train_images.shape[0]
    train_mode(phase_run.training_model, phase_run.phase.frozen_batch_norm_statistics)
    run.sampler.set_order(torch.randperm(count, generator=run.generator))
    # summed on the device and read once per epoch: a per-batch .item() would stall the GPU
    totals = torch.zeros(2, device=run.device, dtype=torch.float64)
    seen = 0
    plans = run.sampler.plans()
    for plan, (images, targets) in zip(plans, run.loader, strict=True):
        totals += _train_batch(run, phase_run, plan, images, targets)
        seen += plan.global_count
        phase_run.bar.update(1)
    phase_run.bar.update(math.ceil(count / run.batch_size) - len(plans))
    train_loss_sum, correct = distributed.sum_across(totals, run.group).tolist()  # also waits for the device
    return train_loss_sum, correct, seen


def _train_batch(run: _FitRun, phase_run: _PhaseRun, plan: BatchPlan, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """One optimiser step on this process's share of the batch; returns its (loss sum, correct)."""
    global_count, group, first, last = plan.global_count, run.group, plan.first, plan.last
    pixels = images.to(run.device, non_blocking=True)
    targets = targets.to(run.device, non_blocking=True)
    on_uint8 = run.augment is not None and getattr(run.augment, "on_uint8", False)
    if on_uint8:  # crops and flips move uint8 pixels: a quarter of the bytes of float
        pixels = _augmented(run, pixels, global_count, first, last)
    pixels = pixels.float().div_(255.0)
    if run.augment is not None and not on_uint8:
        pixels = _augmented(run, pixels, global_count, first, last)
    inputs = standardise_(pixels, run.preprocessing)
    if run.channels_last:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    with _autocast(run.device, run.compute):
        logits = phase_run.training_model(inputs)
    if group.distributed:
        # DDP averages gradients over processes; scaling each share's summed loss by
        # world_size / global batch makes that average the global batch's mean loss,
        # also when the shares differ in size
        loss_sum = F.cross_entropy(logits.float(), targets, reduction="sum")
        loss = loss_sum * (group.world_size / global_count)
    else:
        loss = F.cross_entropy(logits.float(), targets)
        loss_sum = loss.detach() * targets.shape[0]
    total = loss + run.regularizer(run.model) if run.regularizer is not None else loss
    phase_run.optimizer.zero_grad(set_to_none=True)
    total.backward()
    phase_run.step()
    return torch.stack((loss_sum.detach().double(), (logits.detach().argmax(dim=1) == targets).sum().double()))


def _augmented(run: _FitRun, pixels: torch.Tensor, global_count: int, first: int, last: int) -> torch.Tensor:
    """The batch's training view; data-parallel processes apply their rows of one global draw."""
    if run.group.distributed and isinstance(run.augment, BatchAugmenter):
        return run.augment.apply(pixels, run.augment.draw(global_count).rows(first, last))
    return run.augment(pixels)


def _keep_if_best(run: _FitRun, record: EpochRecord) -> bool:
    """Keep the weights when validation improved (or on the first epoch); True when it improved."""
    result = run.result
    improved = record.val_accuracy > result.best_val_accuracy or (
        record.val_accuracy == result.best_val_accuracy and record.val_loss < result.best_val_loss
    )
    if improved or len(result.history) == 1:
        result.best_val_accuracy, result.best_val_loss, result.best_epoch = record.val_accuracy, record.val_loss, record.epoch
        for name, tensor in run.model.state_dict().items():
            run.best_state[name].copy_(tensor)
        return True
    return False


def _scale_learning_rates(optimizer: torch.optim.Optimizer, base_rates: list[float], factor: float) -> None:
    for group, base_rate in zip(optimizer.param_groups, base_rates, strict=True):
        group["lr"] = base_rate * factor
