from typing import Annotated

from zenml import step

from graft.config import NO_SOURCE, DataConfig
from graft.data.dataset import DataManifest, ImageDataset
from graft.data.sources import load_dataset, no_source_dataset
from graft.paths import state_layout
from steps.materializers import GraftDataMaterializer


@step(output_materializers={"source_dataset": GraftDataMaterializer})
def ingest_source(source: str, source_fingerprint: str, data: dict) -> tuple[
    Annotated[ImageDataset, "source_dataset"],
    Annotated[DataManifest, "source_manifest"],
]:
    """Decode the source images once into a uint8 tensor in the working geometry.

    ``source_fingerprint`` (sha256 of the files) is a parameter so the step cache notices changed
    files behind an unchanged path; the decode cache under .graft/cache is keyed by it too. Both
    outputs are hashed by value, so downstream steps re-run only when the data really changed.
    """
    config = DataConfig.model_validate(data)
    if source == NO_SOURCE:  # the source model comes from model.weights as it is
        empty = no_source_dataset(config)
        return empty, DataManifest.of(empty)
    dataset = load_dataset(
        source, "source", config.frame_size, config.content_box, config.channels, state_layout().data_cache / "decoded",
        config.decode_workers, config.geometry,
    )
    return dataset, DataManifest.of(dataset)
