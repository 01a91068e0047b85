"""Transfer strategies as plugins.

Each module in this package defines one ``TransferStrategy`` subclass decorated with
``@register_strategy``; modules are discovered on import, so adding a strategy means adding one
file and touching no other.
"""

import importlib
import pkgutil

from graft.strategies.base import (
    TransferContext,
    TransferStrategy,
    available_strategies,
    create_strategy,
    register_strategy,
    strategy_class,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in {"base", "regularizers"}:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "TransferContext",
    "TransferStrategy",
    "available_strategies",
    "create_strategy",
    "register_strategy",
    "strategy_class",
]
