"""Entry point of each process started by ``graft.training.launch`` under torchrun.

``python -m graft.training.worker module:function inputs.pt outputs.pt``: calls the function with
the saved inputs, and rank 0 saves what it returns. The function's ``fit`` joins the process group,
because only it knows the device, and so the backend, the training uses.
"""

from __future__ import annotations

import importlib
import sys

import torch

from graft.training import distributed


def main(argv: list[str]) -> None:
    task, inputs, outputs = argv
    module_name, function_name = task.split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    try:
        result = function(_load(inputs))
        if distributed.launch_rank() == 0:
            _save(result, outputs)
    finally:
        distributed.shutdown()


def _load(location: str) -> dict:
    """A local path, or a URI in the artifact store (a PyTorchJob's pods share no disk)."""
    if "://" not in location:
        return torch.load(location, weights_only=True)
    import io

    import fsspec

    with fsspec.open(location, "rb") as handle:
        return torch.load(io.BytesIO(handle.read()), weights_only=True)


def _save(result: dict, location: str) -> None:
    if "://" not in location:
        torch.save(result, location)
        return
    import fsspec

    with fsspec.open(location, "wb") as handle:
        torch.save(result, handle)


if __name__ == "__main__":
    main(sys.argv[1:])
