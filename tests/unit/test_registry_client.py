"""Registry client settings: Confluent-style keys, credentials kept out of every message."""

from __future__ import annotations

import httpx
import pytest

from consumer.codec.schema_registry import RegistryClient, RegistrySettings, RegistryUnavailable


def test_settings_from_confluent_keys() -> None:
    s = RegistrySettings.from_mapping(
        {"url": "https://r.example", "basic.auth.user.info": "KEY:s3cret", "timeout": 2}
    )
    assert (s.url, s.basic_auth_user_info, s.timeout) == ("https://r.example", "KEY:s3cret", 2.0)
    assert "s3cret" not in repr(s)
    with pytest.raises(ValueError, match="unknown"):
        RegistrySettings.from_mapping({"url": "u", "sasl.password": "x"})


def test_user_info_and_url_credentials_sent_but_never_shown() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        return httpx.Response(503, text="busy")

    for settings in (
        RegistrySettings("http://127.0.0.1:9/x", basic_auth_user_info="KEY:s3cret"),
        RegistrySettings("http://KEY:s3cret@127.0.0.1:9/x"),
    ):
        client = RegistryClient(settings)
        client._client._transport = httpx.MockTransport(handler)
        with pytest.raises(RegistryUnavailable) as info:
            client.schema_text(1)
        assert "s3cret" not in str(info.value) and "s3cret" not in repr(client)
        assert client.url == "http://127.0.0.1:9/x"
    assert seen == ["Basic S0VZOnMzY3JldA=="] * 2


def test_bad_user_info_is_refused() -> None:
    with pytest.raises(ValueError, match="user:secret"):
        RegistryClient(RegistrySettings("http://127.0.0.1:9", basic_auth_user_info="nocolon"))
