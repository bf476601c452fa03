"""Kubernetes manifests: they parse, validate against the Kubernetes schemas, and carry the GPU,
autoscaling, secret and retry settings that the configs rely on."""

from __future__ import annotations

import kubernetes_validate
import pytest

from qbatch.jobs.runtime.config_loading import load_config
from qbatch.jobs.runtime.exit_codes import TRANSIENT
from qbatch.jobs.index.config import IndexConfig
from qbatch.jobs.rerank.config import RerankConfig
from tests.infra.manifest_files import CONFIGS, INFRA, documents, kuberay_documents, pod_templates, yaml_files

K8S_VERSION = "1.31.0"  # oldest version with podFailurePolicy GA; strict = unknown fields are errors
SECRET_DIR = "/var/run/secrets/qbatch"


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_yaml_parses(path):
    docs = documents(path)
    assert docs, f"{path} has no YAML documents"
    assert all(isinstance(d, dict) for d in docs)


def _all_manifests():
    for path in yaml_files():
        if path.parent.name == "qdrant":  # Helm values, not a manifest
            continue
        for doc in documents(path):
            yield path, doc


@pytest.mark.parametrize("path,doc", list(_all_manifests()), ids=lambda v: getattr(v, "name", ""))
def test_manifests_validate_against_kubernetes_schemas(path, doc):
    if doc["apiVersion"].startswith("ray.io/"):
        # No schema for the KubeRay CRDs here: validate the pods they create, as core/v1 PodTemplates.
        for where, template in pod_templates(doc):
            pod_template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}
            try:
                kubernetes_validate.validate(pod_template, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{path.name} {where}: {e.message}")
    else:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{path.name}: {e.message}")


def test_validation_rejects_a_broken_manifest():
    (_, cron), = [(p, d) for p, d in _all_manifests() if d["kind"] == "CronJob"]
    broken = {**cron, "spec": {**cron["spec"], "concurrencyPolicy": 3}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def _profile() -> IndexConfig:
    return load_config(IndexConfig, CONFIGS / "cluster-gpu.toml")


def test_raycluster_has_an_autoscaled_gpu_worker_group():
    (path, cluster), = kuberay_documents("RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    spec = cluster["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["headGroupSpec"]["template"]["spec"]["containers"]
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    for name, group in groups.items():
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], name
    gpu = groups["gpu"]
    (container,) = gpu["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    # One embed actor per GPU: the autoscaler can supply exactly as many GPUs as the pool may ask for.
    profile = _profile()
    assert profile.embed.num_gpus == 1
    assert gpu["maxReplicas"] == profile.embed.concurrency[1]
    assert float(container["resources"]["limits"]["cpu"]) >= profile.embed.num_cpus


def test_rayjobs_target_the_cluster_and_leave_retries_to_the_wrapper():
    (_, cluster), = kuberay_documents("RayCluster")
    jobs = kuberay_documents("RayJob")
    assert {p.name for p, _ in jobs} == {"rayjob-nightly-incremental.yaml", "rayjob-weekly-full.yaml",
                                         "rayjob-daily-rerank.yaml"}
    for path, job in jobs:
        assert job["apiVersion"] == "ray.io/v1", path.name
        spec = job["spec"]
        assert spec["entrypoint"].strip()
        assert spec["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}, path.name
        assert "rayClusterSpec" not in spec and not spec.get("shutdownAfterJobFinishes", False)
        # KubeRay retries on any failure, so it must not retry at all; qbatch-retry decides.
        assert spec["backoffLimit"] == 0, path.name
        assert spec["entrypoint"].split()[:2] == ["qbatch-retry", "qbatch"], path.name
        assert "name" not in job["metadata"] and job["metadata"]["generateName"].endswith("-")


def test_cronjob_retries_only_transient_exit_codes():
    (cron,) = documents(INFRA / "k8s" / "cronjob.yaml")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = cron["spec"]["jobTemplate"]["spec"]
    template = job["template"]["spec"]
    assert template["restartPolicy"] == "Never"  # podFailurePolicy needs it
    (container,) = template["containers"]
    (fail_rule,) = [r for r in job["podFailurePolicy"]["rules"] if r["action"] == "FailJob"]
    codes = fail_rule["onExitCodes"]
    assert codes["containerName"] == container["name"]
    assert codes["operator"] == "NotIn" and set(codes["values"]) == {int(c) for c in TRANSIENT}
    assert job["backoffLimit"] >= 1
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1


def _secret_mounts(template):
    spec = template["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for container in spec["containers"]:
        for mount in container.get("volumeMounts", []):
            secret = volumes[mount["name"]].get("secret")
            if secret:
                yield container, mount["mountPath"], secret


def _pods():
    for path in [*(INFRA / "kuberay").glob("raycluster*.yaml"), INFRA / "k8s" / "cronjob.yaml"]:
        for doc in documents(path):
            for where, template in pod_templates(doc):
                yield f"{path.name}:{where}", template


@pytest.mark.parametrize("where,template", list(_pods()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_pod_gets_the_secrets_the_configs_name(where, template):
    """The Qdrant key file and the HMAC key variable the configs name exist in every pod, and no
    secret value is written into a manifest."""
    key_files = {load_config(IndexConfig, p).qdrant.api_key_file
                 for p in CONFIGS.glob("*.toml") if not p.name.startswith("rerank")}
    rerank = load_config(RerankConfig, CONFIGS / "rerank-daily.toml")
    key_files.add(rerank.qdrant.api_key_file)
    key_files.discard(None)
    mounted = {f"{path}/{item['path']}" for _, path, secret in _secret_mounts(template)
               for item in secret.get("items", [])}
    assert key_files <= mounted, f"{where}: {sorted(key_files - mounted)} not mounted"
    for container in template["spec"]["containers"]:
        env = {e["name"]: e for e in container.get("env", [])}
        hmac = env[rerank.output.hmac_key_env]
        assert "value" not in hmac and hmac["valueFrom"]["secretKeyRef"]["name"] == "qbatch-secrets"


def test_qdrant_helm_values_match_the_collection_shape():
    (values,) = documents(INFRA / "qdrant" / "values.yaml")
    nodes = values["replicaCount"]
    assert nodes >= 3
    assert values["config"]["cluster"]["enabled"] is True
    ref = values["apiKey"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "qbatch-secrets", "key": "qdrant-api-key"}
    assert values["persistence"]["size"] and values["persistence"]["accessModes"] == ["ReadWriteOnce"]
    for path in CONFIGS.glob("*.toml"):
        if path.name.startswith("rerank"):
            continue
        q = load_config(IndexConfig, path).qdrant
        if q.url is None:
            continue
        assert q.shard_number % nodes == 0, f"{path.name}: shard_number {q.shard_number} vs {nodes} nodes"
        assert q.write_consistency_factor <= q.replication_factor <= nodes, path.name
        assert q.api_key_file, f"{path.name}: a server config needs the key from the mounted Secret"
