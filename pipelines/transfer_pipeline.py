from zenml import pipeline

from graft.config import GraftConfig
from graft.stage_settings import FinetuneSettings, PretrainSettings, SourceData, TargetSettings
from steps.evaluation.evaluate import evaluate
from steps.ingest.ingest_source import DECODE_WORKERS, ingest_source
from steps.promotion.register import register
from steps.training.finetune import finetune
from steps.training.pretrain import pretrain
from steps.validation.validate_target import validate_target

STEP_ORDER = ("ingest_source", "pretrain", "validate_target", "finetune", "evaluate", "register")


@pipeline(enable_cache=True)
def transfer_pipeline(config: GraftConfig, source_fingerprint: str = "", target_fingerprint: str = "") -> None:
    """ingest source -> pretrain -> validate target -> transfer-finetune -> evaluate -> register.

    Each step gets the validated config sections it depends on (``graft.stage_settings``), so
    editing fine-tuning settings keeps the cached source data and pretrained model. The data
    fingerprints are step parameters, so the cache follows the files' contents, not only their paths.
    """
    source_dataset, _source_manifest = ingest_source.with_options(extra={DECODE_WORKERS: config.data.decode_workers})(
        source_fingerprint=source_fingerprint, data=SourceData.of(config.data)
    )
    source_model, pretrain_metrics = pretrain(
        source_dataset,
        settings=PretrainSettings.of(config),
        source_model_name=config.registry.source_model_name,
        source_alias=config.registry.source_alias,
    )
    target_splits, validation_report = validate_target(
        target=config.data.target,
        target_fingerprint=target_fingerprint,
        settings=TargetSettings.of(config),
        registry=config.registry,
        tracking=config.tracking,
        after="pretrain",
    )
    candidates = finetune(source_model, target_splits, settings=FinetuneSettings.of(config))
    evaluation = evaluate(candidates, target_splits, source_model, baseline=config.promotion.baseline)
    register(candidates, evaluation, target_splits, pretrain_metrics, validation_report, config=config)
