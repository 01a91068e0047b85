"""The register step's logic: log every candidate, register the best, promote it if it earns it."""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from graft.config import GraftConfig
from graft.data.dataset import TargetSplits, subset
from graft.data.listing import ListingStore, compare_listings
from graft.errors import RegistryError
from graft.evaluation.metrics import classification_metrics
from graft.evaluation.significance import PAIRED_TESTS
from graft.promotion import PromotionDecision, decide_promotion, hold_back
from graft.registry import aliases, loading, model_logging, versions
from graft.registry.client import tracking_server_call
from graft.registry.comparison import (
    CONTENT_HASHES_TAG,
    ContentHashes,
    comparison_set,
    log_content_hashes,
    read_content_hashes,
)
from graft.history import TARGET_CHANGES_TAG
from graft.registry.lineage import environment_tags
from graft.registry.locking import promotion_lock
from graft.results import Evaluation, PromotionRecord
from graft.training.loop import predict_logits
from graft.watch import FINGERPRINT_TAG
from graft.transfer import Candidate, CandidateSet


@dataclass
class Lineage:
    source_fingerprint: str
    target_fingerprint: str
    pipeline_run: str = ""
    parent_mlflow_run: str = ""
    source_weights: dict[str, str] = field(default_factory=dict)  # graft.weights (enum, file sha256 or model URI)


def select_challenger(candidates: CandidateSet, baseline: str) -> Candidate:
    """The best transferred candidate on the validation split: accuracy, then lower loss.

    The test split plays no part here; it only judges the choice afterwards.
    """
    transferred = [candidate for candidate in candidates.candidates if candidate.strategy != baseline]
    if not transferred:
        raise RegistryError(f"no transferred candidate besides the {baseline} baseline; add a strategy")
    return max(transferred, key=lambda candidate: (candidate.val_accuracy, -candidate.val_loss))


@dataclass
class Scored:
    """One model on the comparison set: the metric, and per image whether it was right (for paired tests)."""

    value: float | None
    correct: torch.Tensor | None
    unscorable: str = ""


def score_on(model, preprocessing, images: torch.Tensor, labels: torch.Tensor, num_classes: int, metric: str) -> Scored:
    if images.shape[0] == 0:
        return Scored(0.0, labels.new_zeros(0, dtype=torch.bool))
    logits = predict_logits(model, images, preprocessing)
    return Scored(classification_metrics(logits, labels, num_classes)[metric], logits.argmax(dim=1) == labels)


def champion_score(model_name: str, version: str, splits: TargetSplits, images, labels, metric: str) -> Scored:
    """The champion re-scored on this run's comparison set, or the reason it cannot be."""
    loaded = loading.load_registered(f"models:/{model_name}/{version}")
    if loaded.class_names != list(splits.dataset.class_names):
        return Scored(None, None, f"champion v{version} predicts other classes {loaded.class_names}")
    return score_on(loaded.model, loaded.preprocessing, images, labels, splits.dataset.num_classes, metric)


def champion_hashes(model_name: str, version: str | None) -> ContentHashes | None:
    if version is None:
        return None
    return read_content_hashes(versions.version_tags(model_name, version).get(CONTENT_HASHES_TAG))


def register_and_promote(
    candidates: CandidateSet,
    evaluation: Evaluation,
    splits: TargetSplits,
    config: GraftConfig,
    lineage: Lineage,
    lock_dir: Path,
    listings: ListingStore | None = None,
) -> PromotionRecord:
    """Log models, register the challenger and decide on ``champion``; returns the decision record."""
    import mlflow

    model_name = config.registry.model_name
    model_uris = log_candidates(candidates, splits, model_name)
    challenger = select_challenger(candidates, config.promotion.baseline)
    seen = ContentHashes.of(splits)
    with tracking_server_call(f"recording the images {model_name} learnt from"):
        hashes_uri = log_content_hashes(seen, challenger.mlflow_run_id or mlflow.active_run().info.run_id)
    # Every call below reads or writes the registry: the champion, its artifacts, the version, the aliases.
    with promotion_lock(lock_dir, model_name), tracking_server_call(f"deciding on and registering {model_name}"):
        registered = versions.version_of_pipeline_run(model_name, lineage.pipeline_run)
        if registered is not None:
            return republished(registered, challenger.strategy, model_uris)
        champion_before = aliases.champion_version(model_name)
        decision = decide_on_comparison_set(candidates, challenger, splits, config, champion_before, seen)
        environment = environment_tags(config)
        lineage_tags = {"graft.source_fingerprint": lineage.source_fingerprint, FINGERPRINT_TAG: lineage.target_fingerprint, **environment}
        decision = hold_back(decision, aliases.held_back_by(model_name, aliases.lineage_key(lineage_tags)))
        challenger = candidates.by_strategy(decision.candidate or challenger.strategy)  # the baseline under promote_baseline
        tags = {
            **version_tags(challenger, evaluation, lineage, hashes_uri, decision),
            **environment,
            "graft.promotion_decision": json.dumps({**decision.as_dict(), "champion_before": champion_before}),
        }
        changes = target_changes(model_name, lineage.target_fingerprint, listings)
        if changes is not None:
            tags[TARGET_CHANGES_TAG] = json.dumps(changes)
        version = model_logging.register(model_uris[challenger.strategy], model_name, tags)
        if decision.promote:
            aliases.move_champion(model_name, version, champion_before)
        champion_after = aliases.champion_version(model_name)
    return PromotionRecord.of(model_name, version, challenger.strategy, decision, champion_before, champion_after, model_uris)


def log_candidates(candidates: CandidateSet, splits: TargetSplits, model_name: str) -> dict[str, str]:
    """Log every candidate as an MLflow model in its own run; their model URIs by strategy."""
    import mlflow

    example_images = splits.dataset.images[splits.indices["val"][:4]]
    model_uris: dict[str, str] = {}
    with tracking_server_call(f"logging the candidate models of {model_name} (nothing was registered)"):
        for candidate in candidates.candidates:
            with mlflow.start_run(run_id=candidate.mlflow_run_id, nested=True) if candidate.mlflow_run_id else nullcontext():
                info = model_logging.log_bundle(candidate.bundle, candidate.strategy, example_images, {"strategy": candidate.strategy})
            model_uris[candidate.strategy] = info.model_uri
    return model_uris


def version_tags(
    challenger: Candidate, evaluation: Evaluation, lineage: Lineage, hashes_uri: str, decision: PromotionDecision
) -> dict[str, str]:
    """The registered version's tags for what it is, what it was judged on, where it came from and the decision."""
    test_metrics = evaluation.candidates[challenger.strategy].test
    return {
        "graft.strategy": challenger.strategy,
        "graft.test_metrics": json.dumps({key: round(value, 6) for key, value in test_metrics.items()}),
        "graft.val_accuracy": f"{challenger.val_accuracy:.6f}",
        "graft.eval_set_hash": evaluation.eval_set_hash,
        CONTENT_HASHES_TAG: hashes_uri,
        "graft.compared_images": str(decision.compared_images),
        "graft.excluded_images": str(decision.excluded_images),
        "graft.source_fingerprint": lineage.source_fingerprint,
        FINGERPRINT_TAG: lineage.target_fingerprint,
        "graft.pipeline_run": lineage.pipeline_run,
        "graft.mlflow_run_id": challenger.mlflow_run_id,
        "graft.parent_mlflow_run_id": lineage.parent_mlflow_run,
        **lineage.source_weights,
        "graft.promotion": "promoted" if decision.promote else "rejected",
        "graft.promotion_reason": decision.reason,
    }


def target_changes(model_name: str, fingerprint: str, listings: ListingStore | None) -> dict | None:
    """Files added, removed, relabelled and modified since the data of the newest registered version
    (``graft history``); None when either listing is unknown here (built-in data, another machine)."""
    if listings is None:
        return None
    trained = versions.version_tag_values(model_name, FINGERPRINT_TAG)
    if not trained:
        return None
    previous = trained[max(trained, key=int)]
    before, after = listings.load(previous), listings.load(fingerprint)
    if before is None or after is None:
        return None
    return {"since": previous, **asdict(compare_listings(before, after))}


def decide_on_comparison_set(
    candidates: CandidateSet,
    challenger: Candidate,
    splits: TargetSplits,
    config: GraftConfig,
    champion_before: str | None,
    seen: ContentHashes,
):
    """Score challenger, baseline and champion on the test images none of them trained or selected on; decide."""
    model_name, metric, baseline = config.registry.model_name, config.promotion.metric, config.promotion.baseline
    champion_seen = champion_hashes(model_name, champion_before)
    compared = comparison_set(splits, seen, champion_seen)
    test = splits.indices["test"][compared.positions]
    images, labels, num_classes = subset(splits.dataset.images, test), splits.dataset.labels[test], splits.dataset.num_classes
    bundles = {candidate.strategy: candidate.bundle for candidate in candidates.candidates}
    scored = {
        name: score_on(bundles[name].build_model(), bundles[name].preprocessing, images, labels, num_classes, metric)
        for name in (challenger.strategy, baseline)
    }
    champion = Scored(None, None)
    if champion_before is not None:
        champion = champion_score(model_name, champion_before, splits, images, labels, metric)
    p_value = None
    if config.promotion.paired_test != "none" and champion.correct is not None and compared.size:
        p_value = PAIRED_TESTS[config.promotion.paired_test](scored[challenger.strategy].correct, champion.correct)
    decision = decide_promotion(
        metric=metric,
        challenger=scored[challenger.strategy].value,
        baseline=scored[baseline].value,
        champion=champion.value,
        min_improvement=config.promotion.min_improvement,
        challenger_name=challenger.strategy,
        baseline_name=baseline,
        p_value=p_value,
        alpha=config.promotion.alpha,
        compared_images=compared.size,
        excluded_images=compared.excluded,
        min_test_images=config.promotion.min_test_images,
        when_transfer_loses=config.promotion.when_transfer_loses,
    )
    if champion.unscorable:
        return replace(decision, promote=False, reason=f"{champion.unscorable}; use another registry.model_name")
    if champion_before is not None and champion_seen is None:
        reason = f"{decision.reason} (champion v{champion_before} records no content hashes: none of its images could be left out)"
        return replace(decision, reason=reason)
    return decision


def republished(registered, challenger: str, model_uris: dict[str, str]) -> PromotionRecord:
    """The record of a retried register step whose version exists already: never a second version.

    The decision stands as recorded on the version. If the earlier attempt died between
    registering and moving ``champion``, the move happens now, once, against the champion
    the decision was taken on; if it moved already, the aliases are left alone.
    """
    model_name, version = registered.name, str(registered.version)
    recorded = json.loads(registered.tags["graft.promotion_decision"])
    champion_before = recorded.pop("champion_before")
    decision = PromotionDecision(**recorded)
    if decision.promote and aliases.champion_version(model_name) != version:
        aliases.move_champion(model_name, version, champion_before)
    strategy = registered.tags.get("graft.strategy", challenger)
    champion_after = aliases.champion_version(model_name)
    return PromotionRecord.of(model_name, version, strategy, decision, champion_before, champion_after, model_uris)
