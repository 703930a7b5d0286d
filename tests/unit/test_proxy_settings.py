"""consumer.proxy: proxy URLs, which variable wins, NO_PROXY matching, and credentials that never
show in a message or repr."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumer.config import ConfigError, load_config
from consumer.proxy import Proxy, ProxyError, ProxySettings, bypasses, parse_proxy, refusal

SECRET = "pa:ss@w0rd"  # needs quoting in a URL


def test_a_proxy_url_and_its_credentials() -> None:
    proxy = parse_proxy("http://alice:pa%3Ass%40w0rd@Proxy.Corp:3128/", "HTTPS_PROXY")
    assert (proxy.host, proxy.port, proxy.credentials) == ("proxy.corp", 3128, ("alice", SECRET))
    assert proxy.authorization == b"Proxy-Authorization: Basic YWxpY2U6cGE6c3NAdzByZA==\r\n"
    assert proxy.url == "http://alice:pa%3Ass%40w0rd@proxy.corp:3128"
    assert str(proxy) == "proxy http://proxy.corp:3128 (from HTTPS_PROXY)"
    assert SECRET not in repr(proxy) and "w0rd" not in str(proxy)


def test_bare_and_ipv6_proxies() -> None:
    assert parse_proxy("proxy.corp:8080", "x").address == "http://proxy.corp:8080"
    assert parse_proxy("http://proxy.corp", "x").port == 80
    ipv6 = parse_proxy("http://[::1]:3128", "x")
    assert (ipv6.host, ipv6.address) == ("::1", "http://[::1]:3128")
    assert ipv6.authorization == b""


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("https://u:pw-s3cret@proxy:443", "only http:// proxies"),
        ("socks5://u:pw-s3cret@proxy:1080", "only http:// proxies"),
        ("http://u:pw-s3cret@proxy:notaport", "not a proxy URL"),
        ("http://u:pw-s3cret@proxy:3128/path", "not a proxy URL"),
        ("http://u:pw-s3cret@:3128", "not a proxy URL"),
    ],
)
def test_what_is_not_a_proxy_url_is_refused_without_its_secret(value: str, says: str) -> None:
    with pytest.raises(ProxyError, match=says) as info:
        parse_proxy(value, "HTTPS_PROXY")
    assert "HTTPS_PROXY" in str(info.value) and "s3cret" not in str(info.value)


def test_the_environment_lower_case_first_and_the_option_over_it() -> None:
    env = {
        "HTTPS_PROXY": "http://upper:1",
        "https_proxy": "http://lower:2",
        "HTTP_PROXY": "http://plain:3",
        "NO_PROXY": "internal",
    }
    settings = ProxySettings.read(None, env)
    assert settings.for_url("https://api.fullstory.com") == Proxy("lower", 2, "https_proxy")
    assert settings.for_url("http://api.fullstory.com") == Proxy("plain", 3, "HTTP_PROXY")
    assert settings.for_url("https://registry.internal:8081") is None
    option = ProxySettings.read("http://chosen:4", env)
    assert option.for_url("https://api.fullstory.com") == Proxy("chosen", 4, "the proxy option")
    assert option.for_url("http://api.fullstory.com") == Proxy("chosen", 4, "the proxy option")
    assert option.for_url("https://registry.internal") is None  # NO_PROXY still applies
    assert ProxySettings.read("None", env).for_url("https://api.fullstory.com") is None
    assert ProxySettings.read(None, {"HTTPS_PROXY": ""}) == ProxySettings()


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "bypass"),
    [
        ("*", "api.fullstory.com", 443, True),
        ("fullstory.com", "api.fullstory.com", 443, True),
        (".fullstory.com", "api.fullstory.com", 443, True),
        ("*.fullstory.com", "api.fullstory.com", 443, True),
        ("fullstory.com", "fullstory.com", 443, True),
        ("fullstory.com", "notfullstory.com", 443, False),
        ("API.FullStory.com.", "api.fullstory.com", 443, True),
        ("a.example, api.fullstory.com:443", "api.fullstory.com", 443, True),
        ("api.fullstory.com:8443", "api.fullstory.com", 443, False),
        ("10.0.0.0/8 192.168.1.1", "10.1.2.3", 80, True),
        ("10.0.0.0/8", "11.1.2.3", 80, False),
        ("192.168.1.1", "192.168.1.1", 80, True),
        ("::1", "[::1]", 443, True),
        ("[::1]:8081", "::1", 8081, True),
        ("fd00::/8", "fd00::5", 443, True),
        ("10.0.0.0/8", "ten.example", 80, False),
        ("", "api.fullstory.com", 443, False),
        (",, ,", "api.fullstory.com", 443, False),
    ],
)
def test_no_proxy_matching(no_proxy: str, host: str, port: int, bypass: bool) -> None:
    assert bypasses(no_proxy, host, port) is bypass


def test_refusals_say_what_to_fix() -> None:
    anonymous = Proxy("p", 3128, "HTTPS_PROXY")
    with_credentials = Proxy("p", 3128, "HTTPS_PROXY", ("u", "pw-s3cret"))
    assert "wants credentials" in refusal(anonymous, 407, "Proxy Authentication Required")
    refused = refusal(with_credentials, 407, "Proxy Authentication Required")
    assert "rejected the credentials" in refused and "s3cret" not in refused
    assert "HTTP 403 Forbidden" in refusal(anonymous, 403, "Forbidden\r\nX: y")


def test_load_config_checks_the_proxy_and_the_ca_file(tmp_path: Path) -> None:
    flags = {"bootstrap_servers": "b", "group_id": "g", "topics": ["t"], "api_key": "k"}
    config = load_config({**flags, "proxy": "http://u:pw-s3cret@proxy.corp:3128"}, env={})
    assert config.proxies.for_url("https://api.fullstory.com") == parse_proxy(
        "http://u:pw-s3cret@proxy.corp:3128", "the proxy option"
    )
    assert "s3cret" not in repr(config)
    env_config = load_config(flags, env={"https_proxy": "http://proxy.corp:3128"})
    assert env_config.proxies.https == Proxy("proxy.corp", 3128, "https_proxy")
    with pytest.raises(ProxyError, match="HTTP_PROXY is not a proxy URL"):
        load_config(flags, env={"HTTP_PROXY": "http://u:pw@:1"})
    with pytest.raises(ConfigError, match=r"fullstory_ca /nonexistent\.pem cannot be read") as info:
        load_config({**flags, "fullstory_ca": "/nonexistent.pem"}, env={})
    assert "--fullstory-ca" in str(info.value)
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="no usable PEM CA certificate"):
        load_config({**flags, "fullstory_ca": str(not_pem)}, env={})
