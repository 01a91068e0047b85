"""Label image files with a registered model, preparing them exactly as its training data was."""

from __future__ import annotations

from pathlib import Path

import torch

from graft.data.decoding import decode_image_file
from graft.data.preprocessing import frame_images, match_channels
from graft.registry.model_registry import LoadedModel
from graft.training.loop import predict_logits

CHUNK = 256


def predict_files(loaded: LoadedModel, files: list[Path]) -> list[tuple[str, str, float]]:
    """(path, label, probability) per file, in the given order."""
    spec = loaded.preprocessing
    rows: list[tuple[str, str, float]] = []
    for start in range(0, len(files), CHUNK):
        chunk = files[start : start + CHUNK]
        images = torch.stack(
            [frame_images(match_channels(decode_image_file(path)[None], spec.channels), spec.frame_size, spec.content_box)[0] for path in chunk]
        )
        probabilities = predict_logits(loaded.model, images, spec).softmax(dim=1)
        confidence, index = probabilities.max(dim=1)
        rows += [(str(path), loaded.class_names[int(i)], float(p)) for path, i, p in zip(chunk, index, confidence)]
    return rows
