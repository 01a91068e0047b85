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
        result = function(torch.load(inputs, weights_only=True))
        if distributed.launch_rank() == 0:
            torch.save(result, outputs)
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
