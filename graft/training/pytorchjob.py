"""Training across several Kubernetes nodes: a Kubeflow Training Operator ``PyTorchJob`` (v1).

A pipeline step that asks for ``compute.distributed.nodes > 1`` writes its task's inputs to the
artifact store, submits a PyTorchJob of one ``Master`` and ``nodes - 1`` ``Worker`` replicas, waits
for it, and reads what rank 0 wrote back. Every replica runs the same command:

    torchrun --nproc-per-node=P --nnodes=N --rdzv-backend=c10d
             --rdzv-endpoint=$(MASTER_ADDR):$(MASTER_PORT) --rdzv-id=<job>
             -m graft.training.worker <task> <inputs URI> <outputs URI>

The operator sets ``MASTER_ADDR`` (``<job>-master-0``) and ``MASTER_PORT`` in each pod, and
Kubernetes expands ``$(VAR)`` in the arguments. The pods read the shards from the artifact store
through a local copy each (``graft.data.shards.fetch_shard``, on an emptyDir), with ``/dev/shm`` on
a memory-backed emptyDir for the DataLoader workers, which KFP pods cannot be given.

Requests are sized from the data by ``graft.resources.resources_for``.
"""

from __future__ import annotations

import time

from graft.data.shards import READ_CACHE_ENV
from graft.resources import PodResources

GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "pytorchjobs"
CONTAINER = "pytorch"  # the operator looks for the container of this name
PORT = 23456  # the operator's default pytorchjob-port
SHARD_CACHE = "/graft-shards"


def torchrun_arguments(job: str, nodes: int, processes: int, task: str, inputs_uri: str, outputs_uri: str) -> list[str]:
    return [
        "torchrun", f"--nproc-per-node={processes}", f"--nnodes={nodes}", "--rdzv-backend=c10d",
        "--rdzv-endpoint=$(MASTER_ADDR):$(MASTER_PORT)", f"--rdzv-id={job}",
        "-m", "graft.training.worker", task, inputs_uri, outputs_uri,
    ]


def _replica(image: str, arguments: list[str], resources: PodResources, environment: dict[str, str], replicas: int) -> dict:
    env = [{"name": name, "value": value} for name, value in {**environment, READ_CACHE_ENV: SHARD_CACHE}.items()]
    container = {
        "name": CONTAINER,
        "image": image,
        "command": arguments[:1],
        "args": arguments[1:],
        "env": env,
        "ports": [{"name": "pytorchjob-port", "containerPort": PORT}],
        "resources": {"requests": resources.requests(), "limits": resources.requests()},
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "shards", "mountPath": SHARD_CACHE}],
    }
    volumes = [{"name": "dshm", "emptyDir": {"medium": "Memory"}}, {"name": "shards", "emptyDir": {}}]
    return {
        "replicas": replicas,
        "restartPolicy": "OnFailure",
        "template": {"spec": {"containers": [container], "volumes": volumes}},
    }


def pytorchjob_manifest(job: str, namespace: str, image: str, task: str, inputs_uri: str, outputs_uri: str, nodes: int,
                        processes: int, resources: PodResources, environment: dict[str, str] | None = None) -> dict:
    """The PyTorchJob: one Master and ``nodes - 1`` Workers, each running ``processes`` processes."""
    if nodes < 2:
        raise ValueError("a PyTorchJob is for two nodes or more; one node runs torchrun in the step itself")
    arguments = torchrun_arguments(job, nodes, processes, task, inputs_uri, outputs_uri)
    environment = {"GRAFT_PROGRESS": "0", **(environment or {})}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PyTorchJob",
        "metadata": {"name": job, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "graft"}},
        "spec": {
            "runPolicy": {"cleanPodPolicy": "Running", "backoffLimit": 2},
            "pytorchReplicaSpecs": {
                "Master": _replica(image, arguments, resources, environment, 1),
                "Worker": _replica(image, arguments, resources, environment, nodes - 1),
            },
        },
    }


def job_state(status: dict | None) -> str | None:
    """'Succeeded' or 'Failed' once the job has finished, else None (from its status conditions)."""
    for condition in (status or {}).get("conditions", []):
        if condition.get("status") == "True" and condition.get("type") in ("Succeeded", "Failed"):
            return condition["type"]
    return None


def submit_and_wait(manifest: dict, timeout_seconds: float, api=None, poll_seconds: float = 10.0) -> str:
    """Create the job, wait until it succeeds or fails (or the timeout passes), delete it; its final state."""
    from graft.errors import GraftError

    if api is None:
        from kubernetes import client, config

        config.load_incluster_config()
        api = client.CustomObjectsApi()
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
    deadline = time.monotonic() + timeout_seconds
    try:
        while True:
            state = job_state(api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name).get("status"))
            if state is not None:
                return state
            if time.monotonic() > deadline:
                raise GraftError(f"PyTorchJob {namespace}/{name} did not finish within {timeout_seconds:.0f} s")
            time.sleep(poll_seconds)
    finally:
        api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
