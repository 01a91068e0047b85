"""Label image files with a registered model, preparing them exactly as its training data was."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch

from graft.data.decoding import decode_image_file
from graft.data.preprocessing import frame_to_spec
from graft.errors import DataError, GraftError
from graft.registry.loading import LoadedModel
from graft.training.loop import predict_logits

CHUNK = 256
CSV_HEADER = ["path", "label", "probability", "error"]


@dataclass(frozen=True)
class Prediction:
    """One file's label and probability, or why it could not be labelled (then label is empty)."""

    path: str
    label: str = ""
    probability: float | None = None
    error: str = ""

    def csv_row(self) -> list[str]:
        return [self.path, self.label, "" if self.probability is None else f"{self.probability:.6f}", self.error]


def predict_files(loaded: LoadedModel, files: list[Path]) -> list[Prediction]:
    """A prediction per file, in the given order; a file that cannot be decoded gets its error, the rest go on."""
    decoded, logits, failed = file_logits(loaded, files)
    results = list(failed)
    if decoded:
        confidence, index = logits.softmax(dim=1).max(dim=1)
        results += [Prediction(str(path), loaded.class_names[int(i)], float(p)) for path, i, p in zip(decoded, index, confidence)]
    order = {str(path): position for position, path in enumerate(files)}
    return sorted(results, key=lambda row: order[row.path])


def file_logits(loaded: LoadedModel, files: list[Path]) -> tuple[list[Path], torch.Tensor, list[Prediction]]:
    """The files that decode, their logits (one row each, same order), and a ``Prediction`` with the error for each other."""
    spec = loaded.preprocessing
    decoded: list[Path] = []
    chunks: list[torch.Tensor] = []
    failed: list[Prediction] = []
    for start in range(0, len(files), CHUNK):
        images = []
        for path in files[start : start + CHUNK]:
            try:
                image = decode_image_file(path)
            except DataError as error:
                failed.append(Prediction(str(path), error=str(error)))
                continue
            images.append(frame_to_spec(image[None], spec)[0])
            decoded.append(path)
        if images:
            chunks.append(predict_logits(loaded.model, torch.stack(images), spec))
    logits = torch.cat(chunks) if chunks else torch.zeros((0, len(loaded.class_names)))
    return decoded, logits, failed


def check_output(path: Path) -> None:
    """Fail at once, in one line, if the CSV cannot be written: before loading a model or predicting.

    The file is opened for appending (an existing one is not truncated) and a new one is removed again.
    """
    if path.is_dir():
        raise GraftError(f"--output {path}: is a folder; pass a file name such as {path / 'predictions.csv'}")
    if not path.parent.is_dir():
        raise GraftError(f"--output {path}: folder {path.parent} does not exist; create it or choose another path")
    existed = path.exists()
    try:
        path.open("a").close()
    except OSError as error:
        raise GraftError(f"--output {path}: cannot write ({error.strerror or error}); choose another path") from None
    if not existed:
        path.unlink(missing_ok=True)


def write_csv(path: Path, predictions: list[Prediction]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_HEADER)
        writer.writerows(prediction.csv_row() for prediction in predictions)
