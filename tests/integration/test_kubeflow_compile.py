"""Compile the transfer pipeline for Kubeflow with ZenML's own code path, without a cluster.

ZenML's compiler turns the pipeline and configs/kubeflow-gpu.yaml into step configurations for a
stack with the Kubeflow orchestrator; the orchestrator's ``submit_pipeline`` then builds and
compiles the KFP v2 pipeline. Only the image lookup (no build here) and the upload to a KFP server
are replaced; the assertions read the compiled KFP IR YAML.
"""

from __future__ import annotations

import tempfile
import types
import uuid
from datetime import datetime
from pathlib import Path
from unittest import mock

import pytest
import yaml

from graft.config import load_config
from graft.paths import configure_environment, project_root

RUN_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "kubeflow-gpu.yaml"
IMAGE = "registry.example.com/graft/step:test"


def _component(component_class, config, flavor: str, component_type):
    now = datetime.now()
    return component_class(
        name=f"test-{flavor}", id=uuid.uuid4(), config=config, flavor=flavor, type=component_type,
        user=None, created=now, updated=now,
    )


def kubeflow_stack():
    """A Kubeflow stack object as a remote run would see it; nothing is registered or contacted."""
    from zenml.artifact_stores.local_artifact_store import LocalArtifactStore, LocalArtifactStoreConfig
    from zenml.container_registries.base_container_registry import BaseContainerRegistry, BaseContainerRegistryConfig
    from zenml.enums import StackComponentType as T
    from zenml.integrations.kubeflow.flavors.kubeflow_orchestrator_flavor import KubeflowOrchestratorConfig
    from zenml.integrations.kubeflow.orchestrators.kubeflow_orchestrator import KubeflowOrchestrator
    from zenml.integrations.mlflow.experiment_trackers.mlflow_experiment_tracker import MLFlowExperimentTracker
    from zenml.integrations.mlflow.flavors.mlflow_experiment_tracker_flavor import MLFlowExperimentTrackerConfig
    from zenml.stack import Stack

    orchestrator = _component(KubeflowOrchestrator, KubeflowOrchestratorConfig(kubernetes_context="test"), "kubeflow", T.ORCHESTRATOR)
    return Stack(
        id=uuid.uuid4(),
        name="test-kubeflow",
        orchestrator=orchestrator,
        artifact_store=_component(LocalArtifactStore, LocalArtifactStoreConfig(path=tempfile.mkdtemp()), "local", T.ARTIFACT_STORE),
        container_registry=_component(
            BaseContainerRegistry, BaseContainerRegistryConfig(uri="registry.example.com/graft"), "default", T.CONTAINER_REGISTRY
        ),
        experiment_tracker=_component(
            MLFlowExperimentTracker,
            MLFlowExperimentTrackerConfig(tracking_uri="http://mlflow.example.com", tracking_username="u", tracking_password="p"),
            "mlflow",
            T.EXPERIMENT_TRACKER,
        ),
    )


def compile_for_kubeflow(run_config: Path) -> dict:
    """The KFP IR (as a dict) that the Kubeflow orchestrator would upload for ``run_config``, with the
    data-sized step resources ``graft run`` adds for the default config."""
    from zenml.config.compiler import Compiler
    from zenml.config.pipeline_run_configuration import PipelineRunConfiguration
    from zenml.integrations.kubeflow.orchestrators.kubeflow_orchestrator import KubeflowOrchestrator
    from zenml.utils import pydantic_utils, source_utils

    from pipelines.runner import data_sized_steps
    from pipelines.transfer_pipeline import transfer_pipeline

    configure_environment()
    source_utils.set_custom_source_root(str(project_root()))
    stack = kubeflow_stack()
    pipeline = transfer_pipeline.copy()
    config = load_config(None)
    pipeline.prepare(config=config)
    run_configuration = pydantic_utils.update_model(
        PipelineRunConfiguration.from_yaml(str(run_config)),
        update=PipelineRunConfiguration.model_validate({"steps": data_sized_steps(config, run_config, "kubeflow")}),
    )  # the same merge ZenML applies to with_options(config_path=..., steps=...)
    snapshot = Compiler().compile(pipeline=pipeline, stack=stack, run_configuration=run_configuration)
    submitted = types.SimpleNamespace(
        id=uuid.uuid4(), step_configurations=snapshot.step_configurations, pipeline_configuration=snapshot.pipeline_configuration
    )
    compiled: dict = {}

    def capture_upload(self, snapshot, pipeline_file_path, run_name):
        compiled["ir"] = yaml.safe_load(Path(pipeline_file_path).read_text())

    with mock.patch.object(KubeflowOrchestrator, "get_image", return_value=IMAGE), mock.patch.object(
        KubeflowOrchestrator, "_upload_and_run_pipeline", capture_upload
    ):
        stack.orchestrator.submit_pipeline(
            snapshot=submitted, stack=stack, base_environment={}, step_environments={name: {} for name in snapshot.step_configurations}
        )
    return compiled["ir"]


@pytest.fixture(scope="module")
def kubeflow_ir() -> dict:
    from pipelines.kubeflow import apply_kubeflow_fixes

    apply_kubeflow_fixes()
    return compile_for_kubeflow(RUN_CONFIG)


def test_gpu_on_exactly_the_gpu_steps(kubeflow_ir):
    executors = kubeflow_ir["deploymentSpec"]["executors"]
    assert set(executors) == {f"exec-{name}" for name in ("ingest-source", "pretrain", "validate-target", "finetune", "evaluate", "register")}
    for name, executor in executors.items():
        container = executor["container"]
        assert container["image"] == IMAGE
        resources = container["resources"]
        if name in ("exec-pretrain", "exec-finetune"):
            assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu", name
            assert resources["accelerator"]["resourceCount"] == "1", name
        else:
            assert "accelerator" not in resources, name


def test_every_step_requests_the_cpu_and_memory_its_data_needs(kubeflow_ir):
    from graft.resources import pipeline_resources

    expected = pipeline_resources(load_config(None))
    for step, sized in expected.items():
        resources = kubeflow_ir["deploymentSpec"]["executors"][f"exec-{step.replace('_', '-')}"]["container"]["resources"]
        settings = sized.zenml_settings()
        quantity = settings["memory"].removesuffix("B")  # 2304MiB -> 2304Mi, a Kubernetes quantity
        assert float(resources["resourceCpuRequest"]) == float(resources["resourceCpuLimit"]) == sized.cpu, step
        assert resources["resourceMemoryRequest"] == resources["resourceMemoryLimit"] == quantity, step
        assert (int(quantity.removesuffix("Mi")) << 20) >= sized.memory_bytes, step
    assert expected["finetune"].memory_bytes > expected["evaluate"].memory_bytes  # training holds batches in flight


def test_step_order_survives_compilation(kubeflow_ir):
    tasks = kubeflow_ir["root"]["dag"]["tasks"]
    upstream = {name: set(task.get("dependentTasks", [])) for name, task in tasks.items()}
    assert upstream["ingest-source"] == set()
    assert upstream["pretrain"] == {"ingest-source"}
    assert upstream["validate-target"] == {"pretrain"}
    assert upstream["finetune"] >= {"pretrain", "validate-target"}
    assert upstream["register"] >= {"evaluate", "finetune"}


def test_stock_orchestrator_cannot_compile_under_this_kfp():
    """Why pipelines/kubeflow.py wraps the components; when this fails, ZenML fixed it: drop the wrapper."""
    from zenml.integrations.kubeflow.orchestrators.kubeflow_orchestrator import KubeflowOrchestrator

    from pipelines.kubeflow import apply_kubeflow_fixes

    apply_kubeflow_fixes()
    fixed = KubeflowOrchestrator._create_dynamic_component
    try:
        KubeflowOrchestrator._create_dynamic_component = fixed.__wrapped__
        with pytest.raises(ValueError, match="only supports PipelineTask"):
            compile_for_kubeflow(RUN_CONFIG)
    finally:
        KubeflowOrchestrator._create_dynamic_component = fixed
