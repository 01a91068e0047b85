"""``graft predict``'s core: a broken file is reported and the others are still labelled; a bad CSV path fails first."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from PIL import Image

from graft.data.preprocessing import PreprocessingSpec
from graft.errors import GraftError
from graft.prediction import check_output, predict_files, write_csv
from graft.registry.loading import LoadedModel


class _Constant(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.tensor([0.0, 2.0]))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.bias.repeat(images.shape[0], 1)


def _loaded() -> LoadedModel:
    return LoadedModel(model=_Constant(), class_names=["a", "b"], preprocessing=PreprocessingSpec())


def test_a_broken_file_is_reported_and_the_others_are_labelled(tmp_path):
    good = [tmp_path / "1.png", tmp_path / "3.png"]
    for path in good:
        Image.new("L", (8, 8), 200).save(path)
    broken = tmp_path / "2.png"
    broken.write_bytes(b"not a png at all")
    rows = predict_files(_loaded(), [good[0], broken, good[1]])
    assert [row.path for row in rows] == [str(good[0]), str(broken), str(good[1])]
    assert [row.label for row in rows] == ["b", "", "b"]
    assert rows[1].error.startswith(f"{broken}: cannot decode image") and rows[1].probability is None
    assert rows[0].error == "" and rows[0].probability == pytest.approx(torch.tensor([0.0, 2.0]).softmax(0)[1].item())
    write_csv(tmp_path / "out.csv", rows)
    table = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert [row["error"] != "" for row in table] == [False, True, False]
    assert table[0]["label"] == "b" and table[1]["label"] == ""


def test_nothing_decodable_gives_only_errors(tmp_path):
    broken = tmp_path / "x.png"
    broken.write_bytes(b"")
    rows = predict_files(_loaded(), [broken])
    assert len(rows) == 1 and rows[0].error and not rows[0].label


def test_check_output(tmp_path):
    with pytest.raises(GraftError, match="is a folder"):
        check_output(tmp_path)
    with pytest.raises(GraftError, match="does not exist"):
        check_output(tmp_path / "missing" / "out.csv")
    with pytest.raises(GraftError, match="cannot write"):
        check_output(Path("/proc/version"))
    existing = tmp_path / "kept.csv"
    existing.write_text("old")
    check_output(existing)
    check_output(tmp_path / "new.csv")
    assert existing.read_text() == "old" and not (tmp_path / "new.csv").exists()
