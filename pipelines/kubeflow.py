"""Three fixes that make ZenML 0.98's Kubeflow orchestrator give our GPU steps a GPU and every step
its memory under kfp 2.17.

1. Node selectors are lost. ``KubeflowOrchestratorSettings`` has a "before" validator that migrates
   the legacy top-level ``node_selectors``/``node_affinity`` keys and, doing so, always replaces
   ``pod_settings`` by one built from those legacy keys, so ``pod_settings.node_selectors`` given
   by the user becomes ``{}``. Settings are validated several times (compiler, then
   ``get_settings`` at submission), so the legacy keys do not survive either. Without the
   ``accelerator`` node selector the orchestrator attaches no GPU. The fix is a settings subclass
   whose validator keeps ``pod_settings`` and merges the legacy keys into it.
2. Compiling fails. ZenML builds the KFP pipeline by calling each step's container component and chaining
``task.after(*upstream_components)`` with the *components*, not the tasks they produced. kfp
2.17's ``PipelineTask.after`` accepts only tasks and exit handlers, so every pipeline with a
dependency between steps fails to compile ("PipelineTask.after() only supports PipelineTask and
dsl.ExitHandler dependencies. Got ContainerComponent."). ``tests/unit/test_kubeflow_config.py``
shows the failure with the stock orchestrator and checks the compiled result with this fix.

The fix hands ZenML, in place of each component, a handle that is itself a ``PipelineTask`` to kfp:
calling it instantiates the component and remembers the task, and its ``name`` is that task's
name, which is all ``after`` reads. Only the client that submits the run needs it; step pods
never compile pipelines.
3. Memory is refused. ZenML passes kfp the memory setting as a float of GB, which kfp's
   ``set_memory_limit`` rejects, and it sets CPU and memory limits without requests. The fix passes
   the memory as a Kubernetes quantity and sets each request equal to its limit, so the
   data-sized resources (``graft.resources``, applied by ``pipelines.runner``) reach the pods.
"""

from __future__ import annotations

from typing import Any

_PATCHED_MARK = "_graft_dependency_fix"


def _fixed_settings_class():
    from pydantic import BaseModel, model_validator
    from zenml.integrations.kubeflow.flavors.kubeflow_orchestrator_flavor import KubeflowOrchestratorSettings

    class GraftKubeflowOrchestratorSettings(KubeflowOrchestratorSettings):
        """``KubeflowOrchestratorSettings`` that keeps ``pod_settings`` through validation."""

        @model_validator(mode="before")
        @classmethod
        def _validate_and_migrate_pod_settings(cls, data: Any) -> Any:  # same name: replaces the stock validator
            if isinstance(data, BaseModel):
                data = {**data.model_dump(exclude_unset=True), **(data.model_extra or {})}
            if not isinstance(data, dict):
                return data
            data = dict(data)
            legacy_selectors = data.pop("node_selectors", None) or {}
            if data.pop("node_affinity", None):
                raise ValueError("node_affinity is ignored by Kubeflow Pipelines 2.x; use pod_settings.node_selectors")
            if legacy_selectors:
                pod = data.get("pod_settings") or {}
                pod = pod.model_dump(exclude_unset=True) if isinstance(pod, BaseModel) else dict(pod)
                pod["node_selectors"] = {**legacy_selectors, **(pod.get("node_selectors") or {})}
                data["pod_settings"] = pod
            if (data.get("client_username") is None) != (data.get("client_password") is None):
                raise ValueError("`client_username` and `client_password` both need to be set together.")
            return data

    return GraftKubeflowOrchestratorSettings


def stock_settings_drop_pod_settings() -> bool:
    """True while ZenML's own settings class loses ``pod_settings.node_selectors``."""
    from zenml.integrations.kubeflow.flavors.kubeflow_orchestrator_flavor import KubeflowOrchestratorSettings

    probe = KubeflowOrchestratorSettings.model_validate({"pod_settings": {"node_selectors": {"accelerator": "probe"}}})
    return not (probe.pod_settings and probe.pod_settings.node_selectors)


def _component_handle_class():
    from kfp.dsl.pipeline_task import PipelineTask

    class ComponentHandle(PipelineTask):
        """Stands for a step's component in ZenML's DAG wiring and for its task in ``after``."""

        def __init__(self, component: Any):  # PipelineTask.__init__ is for instantiated components only
            self._component = component
            self._task = None

        def __call__(self, *args: Any, **kwargs: Any):
            self._task = self._component(*args, **kwargs)
            return self._task

        @property
        def name(self) -> str:
            if self._task is None:
                raise RuntimeError("a step's upstream step must be instantiated before it")
            return self._task.name

    return ComponentHandle


def needs_dependency_fix() -> bool:
    """True while kfp refuses components in ``after`` (kfp >= 2.x with the strict check)."""
    import inspect

    from kfp.dsl.pipeline_task import PipelineTask

    return "only supports PipelineTask" in inspect.getsource(PipelineTask.after)


_KUBERNETES_UNITS = {"KiB": "Ki", "MiB": "Mi", "GiB": "Gi", "TiB": "Ti", "KB": "k", "MB": "M", "GB": "G", "TB": "T"}


def kubernetes_memory(memory: str) -> str:
    """A ZenML memory setting ("3328MiB", "4GB") as a Kubernetes quantity ("3328Mi", "4G")."""
    for unit, quantity_unit in _KUBERNETES_UNITS.items():
        if memory.endswith(unit) and memory[: -len(unit)].isdigit():
            return memory[: -len(unit)] + quantity_unit
    raise ValueError(f"memory {memory!r}: give a whole number of KiB, MiB, GiB, TiB, KB, MB, GB or TB")


def _fix_memory_and_requests(orchestrator_class) -> None:
    """ZenML hands kfp the memory as a float of GB, which kfp refuses, and sets limits only: pass the
    memory as a Kubernetes quantity and make each request equal to its limit."""
    original = orchestrator_class._configure_container_resources
    if getattr(original, _PATCHED_MARK, False):
        return

    def configure_container_resources(self, task, resource_settings, node_selector_constraint=None):
        memory = resource_settings.memory if resource_settings else None
        if memory:
            resource_settings = resource_settings.model_copy(update={"memory": None})
        task = original(self, task, resource_settings, node_selector_constraint)
        if resource_settings and resource_settings.cpu_count:
            task = task.set_cpu_request(f"{resource_settings.cpu_count:g}")
        if memory:
            quantity = kubernetes_memory(memory)
            task = task.set_memory_request(quantity).set_memory_limit(quantity)
        return task

    setattr(configure_container_resources, _PATCHED_MARK, True)
    configure_container_resources.__wrapped__ = original
    orchestrator_class._configure_container_resources = configure_container_resources


def apply_kubeflow_fixes() -> None:
    """Install both fixes on ``KubeflowOrchestrator`` where they are still needed; idempotent."""
    from zenml.integrations.kubeflow.orchestrators.kubeflow_orchestrator import KubeflowOrchestrator

    if stock_settings_drop_pod_settings() and KubeflowOrchestrator.settings_class.fget.__name__ != "fixed_settings_class":
        settings_class = _fixed_settings_class()

        def fixed_settings_class(self):
            return settings_class

        KubeflowOrchestrator.settings_class = property(fixed_settings_class)

    _fix_memory_and_requests(KubeflowOrchestrator)
    original = KubeflowOrchestrator._create_dynamic_component
    if getattr(original, _PATCHED_MARK, False) or not needs_dependency_fix():
        return
    handle_class = _component_handle_class()

    def create_dynamic_component(self, image, command, arguments, component_name):
        return handle_class(original(self, image, command, arguments, component_name))

    setattr(create_dynamic_component, _PATCHED_MARK, True)
    create_dynamic_component.__wrapped__ = original
    KubeflowOrchestrator._create_dynamic_component = create_dynamic_component
