"""The emulator over HTTPS (`--tls-cert`, `--tls-key`) with a trustme certificate, and its
certificate mistakes as one `error:` line."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trustme

from consumer.localenv.emulator import EmulatorProcess

pytestmark = pytest.mark.integration


def test_the_emulator_serves_https_with_a_given_certificate(tmp_path: Path) -> None:
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    cert, key, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    for blob, path in ((issued.cert_chain_pems[0], cert), (issued.private_key_pem, key)):
        blob.write_to_path(str(path))
    ca.cert_pem.write_to_path(str(ca_file))
    with EmulatorProcess(api_keys=("k",), tls=(str(cert), str(key)), ca=str(ca_file)) as emu:
        assert emu.url.startswith("https://127.0.0.1:")
        trusting = ssl.create_default_context(cafile=str(ca_file))
        me = httpx.get(f"{emu.url}/me", headers={"Authorization": "Basic k"}, verify=trusting)
        assert me.status_code == 200
        assert [r["path"] for r in emu.requests()] == ["/me"]  # its helpers trust `ca`
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{emu.url}/me", verify=ssl.create_default_context())


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--tls-cert", "/nonexistent.pem"], "cannot use --tls-cert /nonexistent.pem"),
        (["--tls-key", "/k.pem"], "--tls-key needs --tls-cert"),
    ],
)
def test_unusable_certificates_are_one_error_line(args: list[str], says: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "consumer.cli", "emulator", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert result.stderr.startswith("error: ") and says in result.stderr, result.stderr
