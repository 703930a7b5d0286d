"""Egress through a real HTTP proxy (proxy.py from PyPI, on loopback): CONNECT tunnels to an
HTTPS emulator trusted through `--fullstory-ca`, absolute-form requests to an HTTP one, proxy
authentication accepted and refused, NO_PROXY, and the registry client through the same proxy.

Targets are named `*.test`, which only the proxy resolves (its `proxy_hosts` plugin), so every
request that arrives was carried by the proxy."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from harness import API_KEY, ORG, expected_keys, lag, many_events, wait_for, write_jsonl
from proxyprocess import ProxyProcess

from consumer.codec.schema_registry import RegistryClient, RegistrySettings, RegistryUnavailable
from consumer.localenv import LocalBroker
from consumer.localenv.emulator import EmulatorProcess
from consumer.localenv.ports import free_port
from consumer.produce import produce_file
from consumer.proxy import ProxySettings
from consumer.transform import DestinationSettings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
USER, PASSWORD = "tester", "pw-s3cret-proxy"
NO_PROXY_VARS = {"HTTPS_PROXY": "", "HTTP_PROXY": "", "NO_PROXY": ""}  # none from outside
for _name in list(NO_PROXY_VARS):
    NO_PROXY_VARS[_name.lower()] = ""


class Certs:
    """A trustme CA and a server certificate it issued for 127.0.0.1 and the `.test` names."""

    def __init__(self, root: Path) -> None:
        self.authority = trustme.CA()
        self.ca = root / "ca.pem"
        self.server = root / "server.pem"  # key and chain in one file
        self.authority.cert_pem.write_to_path(str(self.ca))
        issued = self.authority.issue_cert("127.0.0.1", "fullstory.test", "registry.test")
        issued.private_key_and_cert_chain_pem.write_to_path(str(self.server))


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[ProxyProcess]:
    with ProxyProcess(tmp_path) as started:
        yield started


@pytest.fixture
def auth_proxy(tmp_path: Path) -> Iterator[ProxyProcess]:
    with ProxyProcess(tmp_path, auth=f"{USER}:{PASSWORD}") as started:
        yield started


@pytest.fixture
def https_emulator(certs: Certs) -> Iterator[EmulatorProcess]:
    tls = (str(certs.server), str(certs.server))
    with EmulatorProcess(api_keys=(API_KEY,), org_id=ORG, tls=tls, ca=str(certs.ca)) as emu:
        yield emu


def _deliver_through(
    bootstrap: str,
    topic: str,
    emulator: EmulatorProcess,
    consumers: Any,
    tmp_path: Path,
    api_host: str,
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> str:
    """Produce 300 events, run a member against `api_host` until all arrived exactly once;
    the member's log."""
    events = many_events(300, prefix=uuid.uuid4().hex[:6])
    settings, _ = DestinationSettings.from_mapping({})
    expected = expected_keys(events, settings)
    produce_file(bootstrap, topic, write_jsonl(tmp_path / "events.jsonl", events))
    group = f"g-{uuid.uuid4().hex[:8]}"
    member = consumers(
        bootstrap, topic, group, api_host, args=args, env={**NO_PROXY_VARS, **(env or {})}
    ).start()

    def keys() -> Counter[str]:
        return Counter(r["idempotency_key"] for r in emulator.deliveries())

    wait_for(lambda: set(keys()) >= expected, 120, "every request", member.log)
    assert member.stop() == 0, member.log()
    counts = keys()
    assert set(counts) == expected and set(counts.values()) == {1}
    assert lag(bootstrap, group, topic) == 0
    log: str = member.log()
    return log


def test_https_through_a_connect_tunnel_with_a_custom_ca(
    kafka_broker: LocalBroker,
    topic_name: str,
    https_emulator: EmulatorProcess,
    proxy: ProxyProcess,
    consumers: Any,
    tmp_path: Path,
    certs: Certs,
) -> None:
    api_host = f"https://fullstory.test:{https_emulator.port}"
    log = _deliver_through(
        kafka_broker.bootstrap_servers,
        topic_name,
        https_emulator,
        consumers,
        tmp_path,
        api_host,
        args=("--fullstory-ca", str(certs.ca)),
        env={"HTTPS_PROXY": proxy.url()},
    )
    assert f"fullstory.test:{https_emulator.port}" in proxy.log()  # the tunnels it opened
    accepted = [json.loads(line) for line in log.splitlines() if "credentials accepted" in line]
    assert accepted and accepted[0]["proxy"] == proxy.address


def test_http_through_absolute_form_with_proxy_credentials(
    kafka_broker: LocalBroker,
    topic_name: str,
    emulator: EmulatorProcess,
    auth_proxy: ProxyProcess,
    consumers: Any,
    tmp_path: Path,
) -> None:
    log = _deliver_through(
        kafka_broker.bootstrap_servers,
        topic_name,
        emulator,
        consumers,
        tmp_path,
        f"http://fullstory.test:{emulator.port}",
        args=("--proxy", auth_proxy.url(f"{USER}:{PASSWORD}")),
    )
    assert f"POST fullstory.test:{emulator.port}/v2/" in auth_proxy.log()
    assert PASSWORD not in log


def test_no_proxy_is_honoured(
    kafka_broker: LocalBroker,
    topic_name: str,
    https_emulator: EmulatorProcess,
    consumers: Any,
    tmp_path: Path,
    certs: Certs,
) -> None:
    """Every proxy variable names a port nothing listens on: only NO_PROXY lets it through."""
    dead = f"http://127.0.0.1:{free_port()}"
    _deliver_through(
        kafka_broker.bootstrap_servers,
        topic_name,
        https_emulator,
        consumers,
        tmp_path,
        https_emulator.url,
        args=("--fullstory-ca", str(certs.ca)),
        env={"HTTPS_PROXY": dead, "http_proxy": dead, "no_proxy": "localhost,127.0.0.0/8"},
    )


def _start_up(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`run` until it fails at start-up (the FullStory check comes before Kafka's)."""
    command = ["run", "--group-id", "g", "--topic", "t", "--bootstrap-servers", "127.0.0.1:9"]
    return subprocess.run(
        [sys.executable, "-m", "consumer.cli", *command, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "FULLSTORY_API_KEY": API_KEY,
            "PYTHONPATH": str(REPO),
            **(env or {}),
        },
    )


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one `error:` line a failed start-up prints; never a credential anywhere."""
    assert result.returncode == 1, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("scheme", ["https", "http"])
@pytest.mark.parametrize("credentials", [None, f"{USER}:wrong-{PASSWORD}"])
def test_refused_proxy_credentials_are_one_error_line(
    scheme: str,
    credentials: str | None,
    auth_proxy: ProxyProcess,
    emulator: EmulatorProcess,
    https_emulator: EmulatorProcess,
    certs: Certs,
) -> None:
    port = https_emulator.port if scheme == "https" else emulator.port
    result = _start_up(
        "--api-host",
        f"{scheme}://fullstory.test:{port}",
        "--fullstory-ca",
        str(certs.ca),
        env={f"{scheme.upper()}_PROXY": auth_proxy.url(credentials)},
    )
    line = _error_line(result)
    assert "HTTP 407" in line and auth_proxy.address in line, line
    assert f"{scheme.upper()}_PROXY" in line, line
    assert ("rejected the credentials" if credentials else "wants credentials") in line, line


def test_unreachable_proxy_is_one_error_line(certs: Certs) -> None:
    port = free_port()
    result = _start_up(
        "--api-host",
        "https://fullstory.test",
        "--proxy",
        f"http://{USER}:{PASSWORD}@127.0.0.1:{port}",
    )
    line = _error_line(result)
    assert f"cannot connect to proxy http://127.0.0.1:{port}" in line, line
    assert "the proxy option" in line, line


class _Registry(BaseHTTPRequestHandler):
    """Schema id 1 and nothing else."""

    def do_GET(self) -> None:
        body = b'{"schema": "\\"string\\""}' if self.path.endswith("/schemas/ids/1") else b"{}"
        self.send_response(200 if self.path.endswith("/schemas/ids/1") else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(params=["http", "https"])
def registry(request: pytest.FixtureRequest, certs: Certs) -> Iterator[str]:
    """A stand-in registry on loopback; its URL under the name only the proxy resolves."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    if request.param == "https":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(certs.server))
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{request.param}://registry.test:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_registry_client_through_the_proxy(
    registry: str, auth_proxy: ProxyProcess, certs: Certs
) -> None:
    def client(credentials: str) -> RegistryClient:
        proxies = ProxySettings.read(auth_proxy.url(credentials), {})
        settings = RegistrySettings(registry, ca_location=str(certs.ca), proxies=proxies)
        return RegistryClient(settings)

    accepted = client(f"{USER}:{PASSWORD}")
    assert json.loads(accepted.schema_text(1)) == "string"
    accepted.close()
    refused = client(f"{USER}:wrong-{PASSWORD}")
    with pytest.raises(RegistryUnavailable) as info:
        refused.schema_text(1)
    refused.close()
    message = str(info.value)
    assert auth_proxy.address in message and "407" in message, message
    assert PASSWORD not in message
