"""graft.registry.comparison and register_and_promote.decide_on_comparison_set: images the champion or the
challenger trained or selected on never judge them; too few images left refuse the decision."""

from __future__ import annotations

import mlflow
import pytest
import torch

from graft.config import GraftConfig
from graft.data.dataset import ImageDataset
from graft.data.splits import split_target
from graft.registry import register_and_promote
from graft.registry.aliases import move_champion
from graft.registry.comparison import (
    CONTENT_HASHES_TAG,
    ContentHashes,
    comparison_set,
    log_content_hashes,
    read_content_hashes,
)
from graft.registry.model_logging import register
from graft.registry.tracking import ensure_experiment
from graft.transfer import Candidate, CandidateSet

MODEL = "unit-fair-comparison"


@pytest.fixture
def splits(blobs):
    images, labels = blobs(per_class=60, seed=3)
    dataset = ImageDataset(images, labels, ["a", "b", "c"], origin="blobs")
    return split_target(dataset, 0.1, 0.4, 10, split_seed=0, budget_seed=0)


def test_content_hashes_cover_train_pool_and_val(splits):
    hashes = ContentHashes.of(splits)
    dataset = splits.dataset
    assert hashes.trained == set(dataset.keys_of(splits.indices["train"])) | set(dataset.keys_of(splits.indices["unlabeled"]))
    assert hashes.validated == set(dataset.keys_of(splits.indices["val"]))
    assert not hashes.seen & set(dataset.keys_of(splits.indices["test"]))
    assert ContentHashes.from_json(hashes.to_json()) == hashes


def test_images_either_model_saw_are_left_out(splits):
    test_keys = splits.dataset.keys_of(splits.indices["test"])
    challenger = ContentHashes.of(splits)
    alone = comparison_set(splits, challenger, None)
    assert (alone.size, alone.excluded) == (len(test_keys), 0)
    # The champion trained on the first 20 test images and selected on the next 5 (an older split).
    champion = ContentHashes(frozenset(test_keys[:20]), frozenset(test_keys[20:25]))
    compared = comparison_set(splits, challenger, champion)
    assert compared.excluded == 25 and compared.size == len(test_keys) - 25
    kept = {test_keys[position] for position in compared.positions.tolist()}
    assert not kept & champion.seen and not kept & challenger.seen


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("fair")
    previous = mlflow.get_tracking_uri()
    ensure_experiment(f"sqlite:///{tmp_path}/mlflow.db", "unit-fair", tmp_path / "artifacts")
    mlflow.set_experiment("unit-fair")
    yield
    mlflow.set_tracking_uri(previous)


def candidates(source_bundle) -> CandidateSet:
    def candidate(name: str, seed: int) -> Candidate:
        return Candidate(name, source_bundle, {}, [], 0.5, 1.0, 0, 0.0)

    return CandidateSet([candidate("scratch", 0), candidate("adaptive", 1)])


@pytest.mark.parametrize("min_test_images, promoted", [(10, True), (80, False)])
def test_champion_is_rescored_without_its_training_images(registry, splits, source_bundle, monkeypatch, min_test_images, promoted):
    test_keys = splits.dataset.keys_of(splits.indices["test"])
    champion_seen = ContentHashes(frozenset(test_keys[: len(test_keys) // 2]), frozenset())
    with mlflow.start_run() as run:
        mlflow.log_text("stand-in", "model/MLmodel")
    uri = log_content_hashes(champion_seen, run.info.run_id)
    assert read_content_hashes(uri) == champion_seen
    name = f"{MODEL}-{min_test_images}"
    version = register(f"runs:/{run.info.run_id}/model", name, {CONTENT_HASHES_TAG: uri})
    move_champion(name, version, None)

    judged: list[torch.Tensor] = []

    def champion_score(model_name, champion, splits_, images, labels, metric):
        judged.append(images)
        return register_and_promote.Scored(0.0, torch.zeros(images.shape[0], dtype=torch.bool))  # a champion that is always wrong

    # The stand-in challenger and baseline: the baseline always scores 0, the challenger 1.
    def score_on(model, preprocessing, images, labels, num_classes, metric):
        value = 1.0 if model is marker["adaptive"] else 0.0
        judged.append(images)
        return register_and_promote.Scored(value, torch.full((images.shape[0],), bool(value)))

    pool = candidates(source_bundle)
    marker = {}
    for candidate in pool.candidates:
        model = candidate.bundle.build_model()
        marker[candidate.strategy] = model
        monkeypatch.setattr(candidate, "bundle", type("B", (), {"build_model": lambda self, m=model: m, "preprocessing": None})())
    monkeypatch.setattr(register_and_promote, "champion_score", champion_score)
    monkeypatch.setattr(register_and_promote, "score_on", score_on)
    config = GraftConfig.model_validate(
        {"registry": {"model_name": name}, "promotion": {"min_test_images": min_test_images},
         "finetune": {"strategies": {"scratch": {}, "adaptive": {}}}}
    )
    decision = register_and_promote.decide_on_comparison_set(pool, pool.by_strategy("adaptive"), splits, config, version, ContentHashes.of(splits))
    left = len(test_keys) - len(test_keys) // 2
    assert (decision.compared_images, decision.excluded_images) == (left, len(test_keys) // 2)
    assert all(images.shape[0] == left for images in judged) and len(judged) == 3
    expected_images = splits.dataset.images[splits.indices["test"][len(test_keys) // 2 :]]
    # The same images, in the same order, judge all three models, and none the champion trained on.
    assert all(torch.equal(images, expected_images) for images in judged)
    assert decision.promote is promoted
    if not promoted:
        assert "refused" in decision.reason and f"min_test_images={min_test_images}" in decision.reason
