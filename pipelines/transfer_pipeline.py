from zenml import pipeline

from graft.config import PRETRAIN_SECTIONS, config_sections, source_data
from steps.evaluation.evaluate import evaluate
from steps.ingest.ingest_source import ingest_source
from steps.promotion.register import register
from steps.training.finetune import finetune
from steps.training.pretrain import pretrain
from steps.validation.validate_target import validate_target

STEP_ORDER = ("ingest_source", "pretrain", "validate_target", "finetune", "evaluate", "register")


@pipeline(enable_cache=True)
def transfer_pipeline(source: str, target: str, settings: dict, source_fingerprint: str = "", target_fingerprint: str = "") -> None:
    """ingest source -> pretrain -> validate target -> transfer-finetune -> evaluate -> register.

    Each step gets only the config sections it depends on, so editing fine-tuning settings keeps
    the cached source data and pretrained model. The data fingerprints are step parameters, so
    the cache follows the files' contents, not only their paths.
    """
    source_dataset, _source_manifest = ingest_source(source=source, source_fingerprint=source_fingerprint, data=source_data(settings["data"]))
    registry = settings["registry"]
    source_model, pretrain_metrics = pretrain(
        source_dataset,
        settings=config_sections(settings, PRETRAIN_SECTIONS),
        source_model_name=registry.get("source_model_name"),
        source_alias=registry.get("source_alias", "source"),
    )
    target_splits, validation_report = validate_target(
        target=target,
        target_fingerprint=target_fingerprint,
        settings=config_sections(settings, ("seed", "data", "model", "pretrain", "gate", "registry", "tracking")),
        after="pretrain",
    )
    candidates = finetune(source_model, target_splits, settings=config_sections(settings, ("seed", "device", "data", "model", "pretrain", "finetune", "compute")))
    evaluation = evaluate(candidates, target_splits, source_model, settings=config_sections(settings, ("finetune", "promotion")))
    register(candidates, evaluation, target_splits, pretrain_metrics, validation_report, settings=settings)
