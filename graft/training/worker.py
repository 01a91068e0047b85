"""Entry point of each process started by ``graft.training.launch`` under torchrun.

``python -m graft.training.worker module:function inputs.pt outputs.pt``: joins the process group,
calls the function with the saved inputs, and rank 0 saves what it returns.
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
    group = distributed.init_from_env()
    try:
        result = function(torch.load(inputs, weights_only=True))
        if group.is_main:
            torch.save(result, outputs)
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
