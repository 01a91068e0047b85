from typing import Annotated

from zenml import step

from graft.config import DataConfig
from graft.data.dataset import ImageDataset
from graft.data.sources import load_dataset
from steps.materializers import GraftDataMaterializer


@step(output_materializers=GraftDataMaterializer)
def ingest_source(source: str, data: dict) -> Annotated[ImageDataset, "source_dataset"]:
    """Decode the source images once into a uint8 tensor in the working geometry."""
    config = DataConfig.model_validate(data)
    return load_dataset(source, "source", config.frame_size, config.content_box, config.channels)
