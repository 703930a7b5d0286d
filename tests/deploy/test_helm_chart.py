"""The Helm chart lints, renders, validates against the Kubernetes schemas, refuses unsafe values
(more members than partitions, a grace period shorter than the drain, no API key), keeps the
proxy URL in a Secret and wires the egress values to the options' variables, and its ConfigMap is a
config file the service accepts."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from deploytools import DEPLOY, module, run, tool

from consumer.config import load_config
from consumer.options import OPTION

CHART = DEPLOY / "helm" / "fullstory-consumer"
KEY = ("--set", "fullstory.apiKey=test-key")
CRDS = {"ServiceMonitor", "ScaledObject"}
PROXY = "http://corp-user:s3cr%40t@proxy.corp:3128"
EGRESS_ENV = {"FULLSTORY_CONSUMER_PROXY", "NO_PROXY", "FULLSTORY_CONSUMER_FULLSTORY_CA"}
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
        (
            *KEY,
            "--set-string",
            f"egress.proxy={PROXY}",
            "--set",
            "egress.noProxy={schema-registry.kafka.svc,10.0.0.0/8}",
            "--set",
            "egress.fullstoryCa=corp-ca",
        ),
        (
            "--set",
            "fullstory.existingSecret=fs-key",
            "--set",
            "egress.existingProxySecret=proxy",
            "--set",
            "egress.fullstoryCa=corp-ca",
            "--set",
            "egress.fullstoryCaKey=bundle.pem",
        ),
    ],
    ids=["defaults", "everything-on", "existing-secret", "egress", "egress-existing-secrets"],
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
    assert not EGRESS_ENV & set(env)
    assert {v["name"] for v in pod["volumes"]} == {"config", "tmp"}
    assert list(kind(docs, "Secret")["data"]) == ["api-key"]


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


def secret_data(docs: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = kind(docs, "Secret")["data"]
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def test_the_proxy_goes_through_the_secret_only() -> None:
    docs = render(*KEY, "--set-string", f"egress.proxy={PROXY}")
    assert secret_data(docs) == {"api-key": "test-key", "proxy-url": PROXY}
    env = {e["name"]: e for e in container(docs)["env"]}
    ref = env["FULLSTORY_CONSUMER_PROXY"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "rel-fullstory-consumer", "key": "proxy-url"}
    for doc in docs:
        if doc["kind"] != "Secret":
            assert "s3cr" not in str(doc) and "proxy.corp" not in str(doc), doc["kind"]
    # With the API key in an existing Secret the chart's Secret holds the proxy alone.
    docs = render(
        "--set", "fullstory.existingSecret=fs-key", "--set-string", f"egress.proxy={PROXY}"
    )
    assert secret_data(docs) == {"proxy-url": PROXY}
    env = {e["name"]: e for e in container(docs)["env"]}
    assert env["FULLSTORY_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "fs-key"
    assert env["FULLSTORY_CONSUMER_PROXY"]["valueFrom"]["secretKeyRef"]["name"] == (
        "rel-fullstory-consumer"
    )


def test_an_existing_proxy_secret_is_referenced_not_copied() -> None:
    docs = render(
        *KEY,
        "--set-string",
        f"egress.proxy={PROXY}",
        "--set",
        "egress.existingProxySecret=corp-proxy",
        "--set",
        "egress.existingProxySecretKey=url",
    )
    assert secret_data(docs) == {"api-key": "test-key"}
    assert "s3cr" not in str(docs)
    env = {e["name"]: e for e in container(docs)["env"]}
    ref = env["FULLSTORY_CONSUMER_PROXY"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "corp-proxy", "key": "url"}
    docs = render(
        "--set", "fullstory.existingSecret=fs-key", "--set", "egress.existingProxySecret=p"
    )
    assert "Secret" not in {d["kind"] for d in docs}


def test_the_api_key_and_the_proxy_may_not_share_a_key() -> None:
    err = render_error(
        *KEY,
        "--set",
        "egress.proxy=http://p:3128",
        "--set",
        "egress.existingProxySecretKey=api-key",
    )
    assert "would share one key" in err


@pytest.mark.parametrize(
    "no_proxy",
    ["schema-registry.kafka.svc\\,10.0.0.0/8", "{schema-registry.kafka.svc,10.0.0.0/8}"],
    ids=["string", "list"],
)
def test_no_proxy_is_set_from_a_string_or_a_list(no_proxy: str) -> None:
    docs = render(*KEY, "--set", f"egress.noProxy={no_proxy}")
    env = {e["name"]: e for e in container(docs)["env"]}
    assert env["NO_PROXY"] == {"name": "NO_PROXY", "value": "schema-registry.kafka.svc,10.0.0.0/8"}
    assert "FULLSTORY_CONSUMER_PROXY" not in env


def test_the_fullstory_ca_is_mounted_and_named() -> None:
    docs = render(*KEY, "--set", "egress.fullstoryCa=corp-ca")
    c = container(docs)
    env = {e["name"]: e for e in c["env"]}
    path = env["FULLSTORY_CONSUMER_FULLSTORY_CA"]["value"]
    assert path == "/etc/fullstory-consumer-ca/ca.crt"
    mount = next(m for m in c["volumeMounts"] if m["name"] == "fullstory-ca")
    assert mount == {
        "name": "fullstory-ca",
        "mountPath": "/etc/fullstory-consumer-ca",
        "readOnly": True,
    }
    assert path.startswith(mount["mountPath"] + "/")
    pod = kind(docs, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "fullstory-ca")
    assert volume["configMap"] == {
        "name": "corp-ca",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    docs = render(
        *KEY, "--set", "egress.fullstoryCa=corp-ca", "--set", "egress.fullstoryCaKey=b.pem"
    )
    env = {e["name"]: e for e in container(docs)["env"]}
    assert env["FULLSTORY_CONSUMER_FULLSTORY_CA"]["value"] == "/etc/fullstory-consumer-ca/b.pem"


def test_the_egress_env_names_are_the_options_env() -> None:
    docs = render(
        *KEY,
        "--set-string",
        f"egress.proxy={PROXY}",
        "--set",
        "egress.fullstoryCa=corp-ca",
    )
    names = {e["name"] for e in container(docs)["env"]}
    assert {OPTION["proxy"].env, OPTION["fullstory_ca"].env} <= names
