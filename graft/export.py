"""``graft export``: a registered model as an ONNX, TorchScript or ``torch.export`` (pt2) file.

Each file carries what a consumer needs to prepare images and name outputs: the preprocessing
spec (geometry, sizes, per-channel mean and std) and the class names, as ONNX metadata
properties, TorchScript / pt2 extra files, and a ``<output>.json`` file beside it. The model's
input is the normalised float image ``(batch, channels, size, size)``; the batch size is free.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from graft.data.preprocessing import normalise
from graft.errors import GraftError
from graft.models.bundle import ModelBundle

FORMATS = ("onnx", "torchscript", "pt2")
METADATA_FILE = "graft.json"


def export_metadata(bundle: ModelBundle) -> dict:
    return {
        "class_names": list(bundle.class_names),
        "preprocessing": bundle.preprocessing.model_dump(),
        "architecture": bundle.spec.model_dump(),
        "input": "float32 (batch, channels, size, size): pixels/255, minus mean, over std, per channel",
    }


def example_input(bundle: ModelBundle, count: int = 2, seed: int = 0) -> torch.Tensor:
    """Normalised random images in the model's input geometry."""
    spec = bundle.preprocessing
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (count, spec.channels, spec.frame_size, spec.frame_size), generator=generator, dtype=torch.uint8)
    return normalise(images, spec)


def export_bundle(bundle: ModelBundle, fmt: str, output: Path) -> list[Path]:
    """Write ``bundle`` as ``fmt`` to ``output`` (and its metadata beside it); returns the files written."""
    if fmt not in FORMATS:
        raise GraftError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    output.parent.mkdir(parents=True, exist_ok=True)
    model = bundle.build_model()
    example = example_input(bundle)
    metadata = export_metadata(bundle)
    text = json.dumps(metadata, indent=2)
    if fmt == "onnx":
        _export_onnx(model, example, output, metadata)
    elif fmt == "torchscript":
        traced = torch.jit.trace(model, example)
        torch.jit.save(traced, str(output), _extra_files={METADATA_FILE: text})
    else:
        batch = torch.export.Dim("batch", min=1)
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
        torch.export.save(program, output, extra_files={METADATA_FILE: text})
    sidecar = output.with_name(output.name + ".json")
    sidecar.write_text(text + "\n", encoding="utf-8")
    return [output, sidecar]


def _export_onnx(model: torch.nn.Module, example: torch.Tensor, output: Path, metadata: dict) -> None:
    import onnx

    torch.onnx.export(
        model,
        (example,),
        str(output),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    proto = onnx.load(str(output))
    for key, value in (("class_names", metadata["class_names"]), ("preprocessing", metadata["preprocessing"])):
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"graft.{key}", json.dumps(value)
    onnx.save(proto, str(output))
