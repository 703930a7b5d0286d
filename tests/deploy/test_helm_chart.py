"""The Helm chart lints, renders, validates against the Kubernetes schemas, refuses unsafe values
(more members than partitions, a grace period shorter than the drain, no API key), and its
ConfigMap is a config file the service accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from deploytools import DEPLOY, module, run, tool

from consumer.config import load_config

CHART = DEPLOY / "helm" / "fullstory-consumer"
KEY = ("--set", "fullstory.apiKey=test-key")
CRDS = {"ServiceMonitor", "ScaledObject"}
# The oldest Kubernetes the chart supports (policy/v1 PDBs, seccompProfile) and the newest
# schema kubernetes-validate bundles.
K8S_VERSIONS = ("1.25.0", "latest")


def render(*args: str) -> list[dict[str, Any]]:
    out = run(tool("helm"), "template", "rel", str(CHART), *args)
    yaml = module("yaml")
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def render_error(*args: str) -> str:
    proc = run(tool("helm"), "template", "rel", str(CHART), *args, check=False)
    assert proc.returncode != 0, proc.stdout
    return proc.stderr


def kind(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == name]
    assert len(found) == 1, [d["kind"] for d in docs]
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec = kind(docs, "Deployment")["spec"]["template"]["spec"]
    containers: list[dict[str, Any]] = spec["containers"]
    return containers[0]


def test_helm_lint() -> None:
    run(tool("helm"), "lint", "--strict", str(CHART), *KEY)


@pytest.mark.parametrize(
    "values",
    [
        KEY,
        (
            *KEY,
            "--set",
            "metrics.serviceMonitor.enabled=true",
            "--set",
            "keda.enabled=true",
            "--set",
            "kafka.config.security\\.protocol=SASL_SSL",
            "--set",
            "fullstory.settings.org=o-ABC-na1",
        ),
        ("--set", "fullstory.existingSecret=fs-key", "--set", "podDisruptionBudget.enabled=false"),
    ],
    ids=["defaults", "everything-on", "existing-secret"],
)
def test_rendered_manifests_validate(values: tuple[str, ...]) -> None:
    kv = module("kubernetes_validate")
    docs = render(*values)
    versions = [kv.latest_version() if v == "latest" else v for v in K8S_VERSIONS]
    for doc in docs:
        if doc["kind"] in CRDS:
            assert doc["metadata"]["name"] and doc["spec"], doc
            continue
        for version in versions:
            kv.validate(doc, version, strict=True)


def test_validation_catches_a_broken_manifest() -> None:
    kv = module("kubernetes_validate")
    deployment = kind(render(*KEY), "Deployment")
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, kv.latest_version(), strict=True)


def test_defaults_deployment() -> None:
    docs = render(*KEY)
    assert {d["kind"] for d in docs} == {
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "Secret",
        "Service",
        "ServiceAccount",
    }
    deployment = kind(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    c = container(docs)
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["ports"][0]["containerPort"] == 9464
    env = {e["name"]: e for e in c["env"]}
    assert env["FULLSTORY_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "rel-fullstory-consumer"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert kind(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert "test-key" not in str(kind(docs, "ConfigMap"))


def test_grace_period_outlasts_the_drain() -> None:
    pod = kind(render(*KEY, "--set", "config.drainTimeout=60"), "Deployment")
    assert pod["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 60
    err = render_error(
        *KEY, "--set", "config.drainTimeout=30", "--set", "terminationGracePeriodSeconds=30"
    )
    assert "must exceed config.drainTimeout" in err


def test_more_replicas_than_partitions_is_refused() -> None:
    assert kind(render(*KEY, "--set", "replicaCount=6"), "Deployment")["spec"]["replicas"] == 6
    err = render_error(*KEY, "--set", "replicaCount=7", "--set", "partitions=6")
    assert "exceeds partitions" in err


def test_an_api_key_is_required() -> None:
    assert "fullstory.apiKey or fullstory.existingSecret" in render_error()


def test_existing_secret_is_used_and_no_secret_is_made() -> None:
    docs = render("--set", "fullstory.existingSecret=fs-key")
    assert "Secret" not in {d["kind"] for d in docs}
    ref = container(docs)["env"][0]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "fs-key", "key": "api-key"}


def test_keda_scales_on_lag_up_to_the_partition_count() -> None:
    docs = render(*KEY, "--set", "keda.enabled=true", "--set", "partitions=12")
    assert "replicas" not in kind(docs, "Deployment")["spec"]
    scaled = kind(docs, "ScaledObject")
    assert scaled["spec"]["maxReplicaCount"] == 12
    assert scaled["spec"]["scaleTargetRef"]["name"] == "rel-fullstory-consumer"
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == "fullstory"
    assert trigger["metadata"]["allowIdleConsumers"] == "false"
    err = render_error(*KEY, "--set", "keda.enabled=true", "--set", "keda.maxReplicaCount=7")
    assert "keda.maxReplicaCount (7) exceeds partitions (6)" in err


def test_service_monitor_names_the_job_as_the_alerts_expect() -> None:
    docs = render(*KEY, "--set", "metrics.serviceMonitor.enabled=true")
    monitor = kind(docs, "ServiceMonitor")
    service = kind(docs, "Service")
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "fullstory-consumer"
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]


def test_the_configmap_is_a_config_the_service_accepts(tmp_path: Path) -> None:
    docs = render(
        *KEY,
        "--set",
        "kafka.topics={web,ios}",
        "--set",
        "kafka.config.security\\.protocol=SASL_SSL",
        "--set",
        "fullstory.settings.org=o-ABC-na1",
        "--set",
        "fullstory.settings.trackNamedPages=true",
        "--set",
        "config.drainTimeout=12.5",
    )
    path = tmp_path / "config.toml"
    path.write_text(kind(docs, "ConfigMap")["data"]["config.toml"])
    config = load_config({"config": str(path)}, env={"FULLSTORY_API_KEY": "k"})
    assert config.topics == ["web", "ios"]
    assert config.kafka.group_id == "fullstory"
    assert config.metrics.port == 9464
    assert config.delivery.drain_timeout == 12.5
    assert config.kafka.librdkafka == {"security.protocol": "SASL_SSL"}
    settings = config.destinations[0].settings
    assert settings.org == "o-ABC-na1"
