from zenml import pipeline

from graft.config import PRETRAIN_SECTIONS, config_sections
from steps.evaluation.evaluate import evaluate
from steps.ingest.ingest_source import ingest_source
from steps.promotion.register import register
from steps.training.finetune import finetune
from steps.training.pretrain import pretrain
from steps.validation.validate_target import validate_target

STEP_ORDER = ("ingest_source", "pretrain", "validate_target", "finetune", "evaluate", "register")


@pipeline(enable_cache=True)
def transfer_pipeline(source: str, target: str, settings: dict) -> None:
    """ingest source -> pretrain -> validate target -> transfer-finetune -> evaluate -> register.

    Each step gets only the config sections it depends on, so editing fine-tuning settings keeps
    the cached source data and pretrained model.
    """
    source_dataset = ingest_source(source=source, data=settings["data"])
    source_model, pretrain_metrics = pretrain(source_dataset, settings=config_sections(settings, PRETRAIN_SECTIONS))
    target_splits, validation_report = validate_target(
        target=target, settings=config_sections(settings, ("seed", "data", "gate")), after="pretrain"
    )
    candidates = finetune(source_model, target_splits, settings=config_sections(settings, ("seed", "device", "data", "finetune", "compute")))
    evaluation = evaluate(candidates, target_splits, source_model, settings=config_sections(settings, ("finetune", "promotion")))
    register(candidates, evaluation, target_splits, pretrain_metrics, validation_report, settings=settings)
