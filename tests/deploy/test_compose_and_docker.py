"""The compose stack parses, references files that exist and configures the consumer consistently
(metrics port, scrape target, grace period); the Dockerfile builds a non-root image without
secrets from a context that .dockerignore keeps small. (No Docker engine runs in CI.)"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from deploytools import DEPLOY, REPO, yaml_load

from consumer.config import load_config

COMPOSE_DIR = DEPLOY / "compose"
COMPOSE = COMPOSE_DIR / "docker-compose.yml"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"


def services() -> dict[str, Any]:
    data: dict[str, Any] = yaml_load(COMPOSE)["services"]
    return data


def mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    """Bind mounts as (host path resolved from the compose dir, container path)."""
    out = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            out.append(((COMPOSE_DIR / source).resolve(), target))
    return out


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)s", value)
    assert match, value
    return float(match.group(1))


def test_compose_has_the_whole_stack() -> None:
    s = services()
    assert s["kafka"]["image"].startswith("apache/kafka:")
    assert "broker,controller" in s["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    assert s["emulator"]["command"][:3] == ["emulator", "--host", "0.0.0.0"]
    assert s["producer"]["command"][0] == "produce"
    assert s["consumer"]["command"][0] == "run"
    assert {"prometheus", "grafana"} <= set(s)


def test_compose_references_files_that_exist() -> None:
    for name, service in services().items():
        build = service.get("build")
        if build:
            context = (COMPOSE_DIR / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), name
        for host, _ in mounts(service):
            assert host.exists(), f"{name}: {host} does not exist"


def test_the_producer_sends_the_sample_events() -> None:
    producer = services()["producer"]
    file_arg = producer["command"][producer["command"].index("--file") + 1]
    host = {target: source for source, target in mounts(producer)}[file_arg]
    assert host == REPO / "schemas" / "sample-events.jsonl"


def test_the_consumer_config_loads_and_matches_the_scrape(tmp_path: Path) -> None:
    consumer = services()["consumer"]
    for host, target in mounts(consumer):
        dest = tmp_path / target.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(host, dest)
    args = consumer["command"]
    config_path = tmp_path / args[args.index("--config") + 1].lstrip("/")
    env = {"FULLSTORY_API_KEY": "k", "FULLSTORY_API_HOST": "http://emulator:8080"}
    config = load_config({"config": str(config_path)}, env=env)
    assert config.kafka.bootstrap_servers == "kafka:9092"

    prometheus = yaml_load(DEPLOY / "prometheus" / "prometheus.yml")
    job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "fullstory-consumer")
    sd = job["dns_sd_configs"][0]
    assert sd["names"] == ["consumer"] and sd["port"] == config.metrics.port
    assert seconds(consumer["stop_grace_period"]) > config.delivery.drain_timeout
    topics = " ".join(services()["topics"]["command"])
    assert all(t in topics for t in config.topics)


def test_grafana_is_provisioned_with_the_dashboard_and_prometheus() -> None:
    grafana = services()["grafana"]
    targets = {target: host for host, target in mounts(grafana)}
    dashboard_host = DEPLOY / "grafana" / "fullstory-consumer.json"
    dashboard_target = next(t for t, h in targets.items() if h == dashboard_host)
    providers = yaml_load(COMPOSE_DIR / "grafana/provisioning/dashboards/dashboards.yml")
    assert dashboard_target.startswith(providers["providers"][0]["options"]["path"] + "/")
    datasources = yaml_load(COMPOSE_DIR / "grafana/provisioning/datasources/prometheus.yml")
    assert datasources["datasources"][0]["url"] == "http://prometheus:9090"
    assert "datasources" in str(targets) and "dashboards" in str(targets)


def _final_stage(lines: list[str]) -> list[str]:
    starts = [i for i, line in enumerate(lines) if line.upper().startswith("FROM ")]
    assert len(starts) >= 2, "expected a multi-stage build"
    return lines[starts[-1] :]


def _instructions() -> list[str]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    return [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]


def test_dockerfile_runs_as_non_root_on_python_slim() -> None:
    lines = _instructions()
    assert any("python:3.11-slim" in ln for ln in lines)
    users = [ln.split()[1] for ln in _final_stage(lines) if ln.upper().startswith("USER ")]
    assert users, "the final stage sets no USER"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_dockerfile_holds_no_secrets() -> None:
    for line in _instructions():
        word = line.split()[0].upper()
        if word in {"ENV", "ARG", "LABEL"}:
            assert not re.search(r"(KEY|SECRET|PASSWORD|TOKEN)\w*\s*=", line, re.I), line
    assert "FULLSTORY_API_KEY" not in DOCKERFILE.read_text()


def test_dockerignore_keeps_the_context_to_what_copy_needs() -> None:
    rules = [
        ln.strip()
        for ln in (REPO / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert rules[0] == "*", "ignore everything, then re-include"
    included = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    copied: set[str] = set()
    for line in _instructions():
        parts = line.split()
        if parts[0].upper() == "COPY" and not any(p.startswith("--from") for p in parts):
            copied.update(p.rstrip("/").removeprefix("./") for p in parts[1:-1])
    assert copied and copied <= included, copied - included
    assert all((REPO / path).exists() for path in copied)


def test_the_image_holds_the_service_and_compose_adds_the_tools() -> None:
    """The service image installs no extra; the compose stack, whose emulator runs from the same
    image, builds it with the `tools` extra (aiohttp)."""
    lines = _instructions()
    assert "ARG EXTRAS=" in lines
    [install] = [ln for ln in lines if "pip install" in ln]
    assert '".${EXTRAS:+[$EXTRAS]}"' in install
    build = yaml_load(COMPOSE)["x-consumer-image"]["build"]
    assert build["args"] == {"EXTRAS": "tools"}
    assert services()["emulator"]["image"] == services()["consumer"]["image"]
