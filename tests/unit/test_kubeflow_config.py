"""The Kubeflow GPU run config and the step image, checked without a cluster or Docker.

Every settings block of ``configs/kubeflow-gpu.yaml`` is validated by the class ZenML itself uses
for it; the compile test in tests/integration/test_kubeflow_compile.py then checks what KFP gets.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RUN_CONFIG = REPO / "configs" / "kubeflow-gpu.yaml"
DOCKERFILE = REPO / "infra" / "docker" / "Dockerfile"
GPU_STEPS = {"pretrain", "finetune"}


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return pins


@pytest.fixture(scope="module")
def run_config():
    from zenml.config.pipeline_run_configuration import PipelineRunConfiguration

    return PipelineRunConfiguration.from_yaml(str(RUN_CONFIG))


@pytest.fixture(scope="module")
def kubeflow_settings_class():
    from zenml.integrations.kubeflow.orchestrators.kubeflow_orchestrator import KubeflowOrchestrator

    from pipelines.kubeflow import apply_kubeflow_fixes

    apply_kubeflow_fixes()
    return KubeflowOrchestrator.settings_class.fget(None)  # the class the orchestrator validates with


def test_step_names_are_the_pipelines_steps(run_config):
    from pipelines.transfer_pipeline import STEP_ORDER

    assert set(run_config.steps) == set(STEP_ORDER)


def test_every_settings_block_validates_with_zenmls_classes(run_config, kubeflow_settings_class):
    from zenml.config import DockerSettings, ResourceSettings

    raw = yaml.safe_load(RUN_CONFIG.read_text())
    docker = DockerSettings.model_validate(raw["settings"]["docker"])
    assert (REPO / docker.dockerfile).is_file() and docker.install_stack_requirements is False
    kubeflow_settings_class.model_validate(raw["settings"]["orchestrator.kubeflow"])
    for name, step in raw["steps"].items():
        settings = step["settings"]
        assert set(settings) <= {"resources", "orchestrator.kubeflow"}, name
        resources = ResourceSettings.model_validate(settings["resources"])
        assert resources.cpu_count is None and resources.memory is None, f"{name}: CPU and memory are sized from the data"
        if "orchestrator.kubeflow" in settings:
            kubeflow = kubeflow_settings_class.model_validate(settings["orchestrator.kubeflow"])
            assert kubeflow.pod_settings.model_fields_set <= {"node_selectors"}, f"{name}: KFP 2 drops other pod settings"


def test_gpu_fields_on_exactly_the_gpu_steps(run_config, kubeflow_settings_class):
    from zenml.config import ResourceSettings

    for name, step in run_config.steps.items():
        resources = ResourceSettings.model_validate(step.settings["resources"].model_dump())
        kubeflow = step.settings.get("orchestrator.kubeflow")
        selectors = {}
        if kubeflow is not None:
            selectors = kubeflow_settings_class.model_validate(kubeflow.model_dump()).pod_settings.node_selectors
        if name in GPU_STEPS:
            assert resources.gpu_count == 1, name
            assert selectors == {"accelerator": "nvidia.com/gpu"}, name
        else:
            assert not resources.gpu_count, name
            assert "accelerator" not in selectors, name


def test_zenml_stock_settings_still_lose_node_selectors():
    """The settings fix in pipelines/kubeflow.py exists because of this; when it fails, drop the fix."""
    from pipelines.kubeflow import stock_settings_drop_pod_settings

    assert stock_settings_drop_pod_settings()


def test_fixed_settings_keep_pod_settings_and_migrate_legacy_keys(kubeflow_settings_class):
    kept = kubeflow_settings_class.model_validate({"pod_settings": {"node_selectors": {"accelerator": "nvidia.com/gpu"}}})
    assert kept.pod_settings.node_selectors == {"accelerator": "nvidia.com/gpu"}
    again = kubeflow_settings_class.model_validate(kept.model_dump(exclude_unset=True))
    assert again.pod_settings.node_selectors == {"accelerator": "nvidia.com/gpu"}
    legacy = kubeflow_settings_class.model_validate({"node_selectors": {"accelerator": "a100"}})
    assert legacy.pod_settings.node_selectors == {"accelerator": "a100"}
    with pytest.raises(ValueError, match="client_password"):
        kubeflow_settings_class.model_validate({"client_username": "me"})


def _dockerfile_args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE.read_text(), flags=re.MULTILINE))


def test_dockerfile_uses_a_cuda_base_and_the_locked_versions():
    text = DOCKERFILE.read_text()
    args = _dockerfile_args()
    # The base is a build argument (make image passes the local Debian base); CUDA unless told otherwise.
    assert re.search(r"^FROM (\S+)", text, flags=re.MULTILINE).group(1) == "${BASE_IMAGE}"
    base = args["BASE_IMAGE"]
    assert base.startswith("nvidia/cuda:") and "runtime" in base
    pins = lock_pins()
    assert args["TORCH_VERSION"] == pins["torch"] == "2.14.1"
    assert args["TORCHVISION_VERSION"] == pins["torchvision"]
    pyproject = (REPO / "pyproject.toml").read_text()
    low, high = re.search(r'requires-python = ">=(3\.\d+),<(3\.\d+)"', pyproject).groups()
    assert tuple(map(int, low.split("."))) <= tuple(map(int, args["PYTHON_VERSION"].split("."))) < tuple(map(int, high.split(".")))


def test_dockerfile_installs_everything_in_one_pip_call_against_the_lock():
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    installs = [line for line in text.splitlines() if re.search(r"\bpip install\b", line)]
    assert len(installs) == 1
    assert "-c requirements.lock" in installs[0]
    copied = set(re.findall(r"^COPY (.+) \S+$", DOCKERFILE.read_text(), flags=re.MULTILINE))
    assert any("requirements.lock" in line for line in copied)
    for package in ("graft", "steps", "pipelines"):
        assert (REPO / package).is_dir() and any(line.split()[0] == package for line in copied), package


def test_dockerignore_keeps_state_and_the_venv_out_of_the_image():
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")}
    assert {".venv", ".graft", ".git"} <= ignored
    assert not ({"graft", "steps", "pipelines", "requirements.lock", "pyproject.toml"} & ignored)
