"""The register step's logic: log every candidate, register the best, promote it if it earns it."""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from graft.config import GraftConfig
from graft.data.dataset import TargetSplits
from graft.errors import RegistryError
from graft.evaluation.metrics import classification_metrics
from graft.evaluation.significance import PAIRED_TESTS
from graft.promotion import decide_promotion
from graft.registry import model_registry
from graft.registry.lineage import environment_tags
from graft.registry.locking import promotion_lock
from graft.training.loop import predict_logits
from graft.transfer import Candidate, CandidateSet


@dataclass
class Lineage:
    source_fingerprint: str
    target_fingerprint: str
    pipeline_run: str = ""
    parent_mlflow_run: str = ""


def select_challenger(candidates: CandidateSet, baseline: str) -> Candidate:
    """The best transferred candidate on the validation split: accuracy, then lower loss.

    The test split plays no part here; it only judges the choice afterwards.
    """
    transferred = [candidate for candidate in candidates.candidates if candidate.strategy != baseline]
    if not transferred:
        raise RegistryError(f"no transferred candidate besides the {baseline} baseline; add a strategy")
    return max(transferred, key=lambda candidate: (candidate.val_accuracy, -candidate.val_loss))


@dataclass
class ChampionScore:
    value: float | None
    correct: torch.Tensor | None  # per test image, for paired tests
    unscorable: str = ""


def champion_score(model_name: str, version: str, splits: TargetSplits, metric: str) -> ChampionScore:
    """The champion re-scored on this run's test split, or the reason it cannot be."""
    loaded = model_registry.load_registered(f"models:/{model_name}/{version}")
    if loaded.class_names != list(splits.dataset.class_names):
        return ChampionScore(None, None, f"champion v{version} predicts other classes {loaded.class_names}")
    logits = predict_logits(loaded.model, splits.images("test"), loaded.preprocessing)
    value = classification_metrics(logits, splits.labels("test"), splits.dataset.num_classes)[metric]
    return ChampionScore(value, correct_on_test(logits, splits))


def correct_on_test(logits: torch.Tensor, splits: TargetSplits) -> torch.Tensor:
    """Per test image: did the model get it right? The input of the paired tests."""
    return logits.argmax(dim=1) == splits.labels("test")


def publish(
    candidates: CandidateSet,
    evaluation: dict,
    splits: TargetSplits,
    config: GraftConfig,
    lineage: Lineage,
    lock_dir: Path,
) -> dict:
    """Log models, register the challenger and decide on ``champion``; returns the decision record."""
    import mlflow

    model_name = config.registry.model_name
    metric = config.promotion.metric
    baseline = config.promotion.baseline
    example_images = splits.images("val")[:4]
    model_uris: dict[str, str] = {}
    with model_registry.tracking_server_call(f"logging the candidate models of {model_name} (nothing was registered)"):
        for candidate in candidates.candidates:
            with mlflow.start_run(run_id=candidate.mlflow_run_id, nested=True) if candidate.mlflow_run_id else nullcontext():
                info = model_registry.log_bundle(candidate.bundle, candidate.strategy, example_images, {"strategy": candidate.strategy})
            model_uris[candidate.strategy] = info.model_uri

    challenger = select_challenger(candidates, baseline)
    scores = {name: row["test"] for name, row in evaluation["candidates"].items()}
    # Every call below reads or writes the registry: the champion, its artifacts, the version, the aliases.
    with promotion_lock(lock_dir, model_name), model_registry.tracking_server_call(f"deciding on and registering {model_name}"):
        registered = model_registry.version_of_pipeline_run(model_name, lineage.pipeline_run)
        if registered is not None:
            return republished(registered, challenger.strategy, model_uris)
        champion_before = model_registry.champion_version(model_name)
        champion = ChampionScore(None, None)
        if champion_before is not None:
            champion = champion_score(model_name, champion_before, splits, metric)
        p_value = None
        if config.promotion.paired_test != "none" and champion.correct is not None:
            bundle = challenger.bundle
            challenger_logits = predict_logits(bundle.build_model(), splits.images("test"), bundle.preprocessing)
            p_value = PAIRED_TESTS[config.promotion.paired_test](correct_on_test(challenger_logits, splits), champion.correct)
        decision = decide_promotion(
            metric=metric,
            challenger=scores[challenger.strategy][metric],
            baseline=scores[baseline][metric],
            champion=champion.value,
            min_improvement=config.promotion.min_improvement,
            challenger_name=challenger.strategy,
            baseline_name=baseline,
            p_value=p_value,
            alpha=config.promotion.alpha,
        )
        if champion.unscorable:
            decision = replace(decision, promote=False, reason=f"{champion.unscorable}; use another registry.model_name")
        tags = {
            "graft.strategy": challenger.strategy,
            "graft.test_metrics": json.dumps({key: round(value, 6) for key, value in scores[challenger.strategy].items()}),
            "graft.val_accuracy": f"{challenger.val_accuracy:.6f}",
            "graft.eval_set_hash": evaluation["eval_set_hash"],
            "graft.source_fingerprint": lineage.source_fingerprint,
            "graft.target_fingerprint": lineage.target_fingerprint,
            "graft.pipeline_run": lineage.pipeline_run,
            "graft.mlflow_run_id": challenger.mlflow_run_id,
            "graft.parent_mlflow_run_id": lineage.parent_mlflow_run,
            **environment_tags(config),
            "graft.promotion": "promoted" if decision.promote else "rejected",
            "graft.promotion_reason": decision.reason,
            "graft.promotion_decision": json.dumps({**decision.as_dict(), "champion_before": champion_before}),
        }
        version = model_registry.register(model_uris[challenger.strategy], model_name, tags)
        if decision.promote:
            model_registry.move_champion(model_name, version, champion_before)
        champion_after = model_registry.champion_version(model_name)
    return {
        "model_name": model_name,
        "registered_version": version,
        "challenger": challenger.strategy,
        "promoted": decision.promote,
        "reason": decision.reason,
        "decision": decision.as_dict(),
        "champion_before": champion_before,
        "champion_after": champion_after,
        "model_uris": model_uris,
    }


def republished(registered, challenger: str, model_uris: dict[str, str]) -> dict:
    """The record of a retried register step whose version exists already: never a second version.

    The decision stands as recorded on the version. If the earlier attempt died between
    registering and moving ``champion``, the move happens now, once, against the champion
    the decision was taken on; if it moved already, the aliases are left alone.
    """
    model_name, version = registered.name, str(registered.version)
    recorded = json.loads(registered.tags["graft.promotion_decision"])
    champion_before = recorded.pop("champion_before")
    if recorded["promote"] and model_registry.champion_version(model_name) != version:
        model_registry.move_champion(model_name, version, champion_before)
    return {
        "model_name": model_name,
        "registered_version": version,
        "challenger": registered.tags.get("graft.strategy", challenger),
        "promoted": recorded["promote"],
        "reason": recorded["reason"],
        "decision": recorded,
        "champion_before": champion_before,
        "champion_after": model_registry.champion_version(model_name),
        "model_uris": model_uris,
    }
