"""graft: transfer learning on images, as a pipeline that ends in a model registry.

This package holds the framework-free logic (data, models, strategies, the training loop,
metrics and the promotion decision). The ZenML wiring lives in ``steps/`` and ``pipelines/``.
"""

__version__ = "0.1.0"
