"""The synthetic-image fixtures (``tests/synthetic.py``)."""

from tests.synthetic import blob_dataset, blobs, preprocessing, source_bundle  # noqa: F401
