"""Data several times larger than a memory cap still trains: the training process's peak RSS grows by
less than a quarter of the dataset's bytes over an epoch that reads every image from the shards."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from graft.paths import project_root

EPOCH_UNDER_A_CAP = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np, torch
    from torch import nn
    from graft.data import shards
    from graft.data.preprocessing import PreprocessingSpec
    from graft.training.loop import TrainingData, fit
    from graft.training.phases import Phase

    count, shape = 32000, (3, 64, 64)  # 393 MB: fixed costs of the loader stay small beside a quarter of it
    writer = shards.ShardWriter(shards.ShardPool(Path(sys.argv[1])), shape)
    rng = np.random.default_rng(0)
    locations = []
    for start in range(0, count, 500):
        locations += writer.add(rng.integers(0, 256, (500, *shape), dtype=np.uint8))
    writer.flush()
    shards.MAPPED_LIMIT_BYTES = 0  # data bigger than memory: read per image, nothing kept mapped
    images = shards.ShardImages(sys.argv[1], writer.shards, [s for s, _ in locations], [o for _, o in locations], shape)
    labels = torch.from_numpy(rng.integers(0, 10, count)).long()
    model = nn.Sequential(nn.AvgPool2d(8), nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
    spec = PreprocessingSpec(frame_size=64, content_box=64, channels=3, mean=0.5, std=0.25)

    def epoch(data):
        phase = Phase("train", 1, [{"params": list(model.parameters()), "lr": 1e-3}])
        return fit(model, data, [phase], spec, batch_size=64, patience=1, generator=torch.Generator().manual_seed(0))

    few = torch.arange(64)
    small = images.subset(few)
    epoch(TrainingData(small, labels[few], small, labels[few]))  # allocations that do not grow with the data
    Path("/proc/self/clear_refs").write_text("5")  # restart the peak RSS (VmHWM) from the current RSS
    start = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmRSS")))
    result = epoch(TrainingData(images, labels, small, labels[few]))
    peak = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")))
    print(json.dumps({"growth": (peak - start) * 1024, "data": images.numel(), "seen": result.images_seen,
                      "loss": result.history[0].train_loss}))
    """
)


def test_an_epoch_over_data_four_times_the_cap_keeps_rss_under_the_cap(tmp_path):
    completed = subprocess.run([sys.executable, "-c", EPOCH_UNDER_A_CAP, str(tmp_path)], capture_output=True, text=True,
                               cwd=project_root(), env={"GRAFT_PROGRESS": "0", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    cap = report["data"] / 4
    assert report["seen"] == 32000 and report["loss"] == report["loss"]  # trained on every image, loss not NaN
    assert report["growth"] < cap, f"RSS grew by {report['growth']} bytes over an epoch; cap {cap:.0f}"
