from typing import Annotated

from zenml import get_step_context, step

from graft.config import NO_SOURCE
from graft.data.dataset import DataManifest, ImageDataset
from graft.data.sources import load_dataset, no_source_dataset
from graft.paths import state_layout
from graft.stage_settings import SourceData
from steps.materializers import GraftDataMaterializer

DECODE_WORKERS = "decode_workers"  # in the step's `extra`, which the cache key leaves out: a speed setting


@step(output_materializers={"source_dataset": GraftDataMaterializer})
def ingest_source(source_fingerprint: str, data: SourceData) -> tuple[
    Annotated[ImageDataset, "source_dataset"],
    Annotated[DataManifest, "source_manifest"],
]:
    """Decode the source images once into a uint8 tensor in the working geometry.

    ``source_fingerprint`` (sha256 of the files) is a parameter so the step cache notices changed
    files behind an unchanged path; the decode cache under .graft/cache is keyed by it too. Both
    outputs are hashed by value, so downstream steps re-run only when the data really changed.
    ``data.decode_workers`` comes in the step's ``extra``, so it changes no cache key.
    """
    if data.source == NO_SOURCE:  # the source model comes from model.weights as it is
        empty = no_source_dataset(data)
        return empty, DataManifest.of(empty)
    workers = get_step_context().step_run.config.extra.get(DECODE_WORKERS)
    layout = state_layout()
    dataset = load_dataset(
        data.source, "source", data.frame_size, data.content_box, data.channels, layout.data_cache / "decoded",
        workers, data.geometry, layout.digest_memo,
    )
    return dataset, DataManifest.of(dataset)
