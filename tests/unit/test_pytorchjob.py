"""The multi-node spec: a Kubeflow PyTorchJob checked without a cluster, the way the single-node
Kubeflow config is (tests/unit/test_kubeflow_config.py): every pod template deserialises into the
Kubernetes client's own models, and the job runs the command a c10d rendezvous needs."""

from __future__ import annotations

import pytest
import yaml

from graft.config import GraftConfig
from graft.resources import resources_for
from graft.training.pytorchjob import CONTAINER, job_state, pytorchjob_manifest, submit_and_wait

IMAGE_224 = 3 * 224 * 224


def manifest(nodes: int = 3, processes: int = 4):
    resources = resources_for(1_000_000, IMAGE_224, 256, processes, gpus=4)
    return pytorchjob_manifest("graft-test", "kubeflow", "registry.example/graft-step:1", "graft.transfer:finetune_worker",
                               "s3://bucket/jobs/graft-test/inputs.pt", "s3://bucket/jobs/graft-test/outputs.pt",
                               nodes, processes, resources)


def pod_template(spec: dict):
    from kubernetes.client import ApiClient

    return ApiClient()._ApiClient__deserialize(spec["template"], "V1PodTemplateSpec")


def test_master_and_workers_deserialise_as_kubernetes_pod_templates():
    job = yaml.safe_load(yaml.safe_dump(manifest()))  # what kubectl or the API would receive
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 2)
    for spec in replicas.values():
        template = pod_template(spec)
        (container,) = template.spec.containers
        assert container.name == CONTAINER and container.ports[0].container_port == 23456
        assert container.resources.requests == container.resources.limits
        assert container.resources.requests["nvidia.com/gpu"] == "4"
        mounts = {mount.mount_path: mount.name for mount in container.volume_mounts}
        volumes = {volume.name: volume for volume in template.spec.volumes}
        assert volumes[mounts["/dev/shm"]].empty_dir.medium == "Memory"  # DataLoader workers' shared memory
        env = {item.name: item.value for item in container.env}
        assert env["GRAFT_SHARD_CACHE"] in mounts  # shards read through a local copy per pod


def test_every_node_runs_torchrun_at_the_masters_rendezvous():
    container = manifest(nodes=3, processes=4)["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    command = container["command"] + container["args"]
    assert command[:1] == ["torchrun"]
    assert {"--nproc-per-node=4", "--nnodes=3", "--rdzv-backend=c10d", "--rdzv-endpoint=$(MASTER_ADDR):$(MASTER_PORT)"} <= set(command)
    assert command[-3:] == ["graft.transfer:finetune_worker", "s3://bucket/jobs/graft-test/inputs.pt",
                            "s3://bucket/jobs/graft-test/outputs.pt"]


def test_requests_grow_with_the_pixels_only_up_to_the_mapped_limit():
    from graft.resources import INDEX_BYTES_PER_IMAGE

    small = resources_for(10_000, 784, 128, 1, gpus=1)
    large = resources_for(1_000_000, IMAGE_224, 256, 1, gpus=1)
    huge = resources_for(100_000_000, IMAGE_224, 256, 1, gpus=1)
    assert small.memory_bytes < large.memory_bytes < huge.memory_bytes
    assert huge.memory_bytes - large.memory_bytes == 99_000_000 * INDEX_BYTES_PER_IMAGE  # beyond it, only the index grows
    assert large.requests()["memory"].endswith("Gi") and large.cpu == 5


def test_one_node_is_not_a_job_and_several_need_an_image_and_a_store():
    with pytest.raises(ValueError, match="two nodes"):
        manifest(nodes=1)
    with pytest.raises(ValueError, match="job_image and job_store"):
        GraftConfig.model_validate({"compute": {"distributed": {"nodes": 2}}})
    GraftConfig.model_validate({"compute": {"distributed": {"nodes": 2, "job_image": "i", "job_store": "s3://b/p"}}})


class FakeApi:
    def __init__(self, states):
        self.states, self.calls = list(states), []

    def create_namespaced_custom_object(self, *args):
        self.calls.append(("create", args[-1]["metadata"]["name"]))

    def get_namespaced_custom_object(self, *args):
        state = self.states.pop(0)
        return {"status": {"conditions": [{"type": state, "status": "True"}]} if state else {}}

    def delete_namespaced_custom_object(self, *args):
        self.calls.append(("delete", args[-1]))


def test_submit_waits_for_the_final_state_and_deletes_the_job():
    api = FakeApi([None, None, "Succeeded"])
    assert submit_and_wait(manifest(), 60, api=api, poll_seconds=0) == "Succeeded"
    assert api.calls == [("create", "graft-test"), ("delete", "graft-test")]
    assert job_state({"conditions": [{"type": "Running", "status": "True"}]}) is None
    assert submit_and_wait(manifest(), 60, api=FakeApi(["Failed"]), poll_seconds=0) == "Failed"
