from typing import Annotated

from zenml import step

from graft.config import DataConfig
from graft.data.dataset import ImageDataset
from graft.data.sources import load_dataset
from graft.paths import state_layout
from steps.materializers import GraftDataMaterializer


@step(output_materializers=GraftDataMaterializer)
def ingest_source(source: str, source_fingerprint: str, data: dict) -> Annotated[ImageDataset, "source_dataset"]:
    """Decode the source images once into a uint8 tensor in the working geometry.

    ``source_fingerprint`` (sha256 of the files) is a parameter so the step cache notices changed
    files behind an unchanged path; the decode cache under .graft/cache is keyed by it too.
    """
    config = DataConfig.model_validate(data)
    return load_dataset(
        source, "source", config.frame_size, config.content_box, config.channels, state_layout().data_cache / "decoded", config.decode_workers
    )
