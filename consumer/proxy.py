"""Which HTTP proxy a request goes through, for the FullStory transport and the Schema Registry
client alike: the `proxy` option if given (`none`: no proxy), else the standard `HTTPS_PROXY` /
`HTTP_PROXY` (lower or upper case, lower first, as curl reads them), and never for a host that
`NO_PROXY` lists (with the option too, so an internal registry can bypass it).

A proxy's `user:password@` becomes its `Proxy-Authorization: Basic` header. `str(proxy)` is
how every message names it: `proxy http://host:port (from HTTPS_PROXY)`, never with the
credentials. Only `http://` proxies are supported: the tunnel to an https target is TLS to the
target either way, and TLS to the proxy itself is rare enough not to carry its code.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

from consumer.errors import UserError

DISABLED = "none"  # the `proxy` option's value that turns proxies off


class ProxyError(UserError):
    """A proxy setting that is not a usable proxy URL (the message never shows credentials)."""


@dataclass(frozen=True)
class Proxy:
    """One HTTP proxy: where it is, what sets it, and its credentials (never shown)."""

    host: str  # IPv6 without brackets
    port: int
    source: str  # the setting it came from, e.g. "the proxy option" or "HTTPS_PROXY"
    credentials: tuple[str, str] | None = field(default=None, repr=False)  # user, password

    @property
    def address(self) -> str:
        """`http://host:port`, credentials left out: how messages name it."""
        return f"http://{self._authority}"

    @property
    def url(self) -> str:
        """The URL with its credentials, for httpx (which makes the same header of them)."""
        if self.credentials is None:
            return self.address
        user, password = (quote(part, safe="") for part in self.credentials)
        return f"http://{user}:{password}@{self._authority}"

    @property
    def authorization(self) -> bytes:
        """The `Proxy-Authorization` header line its credentials make, or nothing."""
        if self.credentials is None:
            return b""
        token = base64.b64encode(":".join(self.credentials).encode())
        return b"Proxy-Authorization: Basic %s\r\n" % token

    @property
    def _authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"proxy {self.address} (from {self.source})"


def parse_proxy(value: str, source: str) -> Proxy:
    """`http://[user:password@]host[:port]` (a bare `host:port` is taken as http) as a Proxy;
    ProxyError naming `source`, never the credentials, when it is not one."""
    text = value.strip()
    if "://" not in text:
        text = f"http://{text}"
    usage = f"give http://[user:password@]host:port, or '{DISABLED}' for no proxy"
    try:
        url = urlsplit(text)
        host, port = url.hostname, url.port
    except ValueError:
        raise ProxyError(f"{source} is not a proxy URL; {usage}") from None
    if url.scheme != "http":
        raise ProxyError(
            f"{source} is a {url.scheme}:// URL; only http:// proxies are supported (https "
            "targets still go through them, in a TLS tunnel to the target)"
        )
    if not host or url.path not in ("", "/") or url.query or url.fragment:
        raise ProxyError(f"{source} is not a proxy URL; {usage}")
    credentials = None
    if url.username is not None:
        credentials = (unquote(url.username), unquote(url.password or ""))
    return Proxy(host.lower(), port or 80, source, credentials)


def bypasses(no_proxy: str, host: str, port: int) -> bool:
    """Whether `NO_PROXY` (comma or space separated) exempts `host:port` from the proxy: `*`
    for every host, a name for itself and its subdomains (`example.com`, `.example.com` and
    `*.example.com` alike), an IP address or CIDR range, each optionally with `:port`."""
    host = host.strip("[]").rstrip(".").lower()
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in re.split(r"[,\s]+", no_proxy.lower()):
        if not entry:
            continue
        if entry == "*":
            return True
        name, entry_port = _split_port(entry)
        if entry_port is not None and entry_port != port:
            continue
        if "/" in name:
            try:
                if address is not None and address in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = name.lstrip("*").lstrip(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _split_port(entry: str) -> tuple[str, int | None]:
    """`host:port`, `[v6]:port` → (host, port); a bare IPv6 address has no port."""
    if entry.startswith("["):
        name, _, rest = entry[1:].partition("]")
        return name, int(rest[1:]) if rest[1:].isdigit() else None
    name, sep, port = entry.rpartition(":")
    if sep and ":" not in name and port.isdigit():
        return name, int(port)
    return entry, None


@dataclass(frozen=True)
class ProxySettings:
    """The proxy rules, read once at start-up from the `proxy` option and the environment."""

    https: Proxy | None = None
    http: Proxy | None = None
    no_proxy: str = ""

    @classmethod
    def read(cls, option: str | None, env: Mapping[str, str]) -> ProxySettings:
        """From the `proxy` option (None: the environment's proxies; `none`: no proxy) and
        `env`. ProxyError when a proxy URL is not one."""
        no_proxy = env.get("no_proxy") or env.get("NO_PROXY") or ""
        if option is not None and option.strip():
            if option.strip().lower() == DISABLED:
                return cls()
            proxy = parse_proxy(option, "the proxy option")
            return cls(proxy, proxy, no_proxy)
        found: list[Proxy | None] = []
        for name in ("https_proxy", "http_proxy"):
            value, source = env.get(name), name
            if not value:
                value, source = env.get(name.upper()), name.upper()
            found.append(parse_proxy(value, source) if value else None)
        return cls(found[0], found[1], no_proxy)

    def for_url(self, url: str) -> Proxy | None:
        """The proxy for requests to `url`, or None to connect directly."""
        parts = urlsplit(url)
        proxy = self.https if parts.scheme == "https" else self.http
        if proxy is None or not parts.hostname:
            return None
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return None if bypasses(self.no_proxy, parts.hostname, port) else proxy


def refusal(proxy: Proxy, status: int, reason: str) -> str:
    """What to tell the operator when the proxy answered `status` instead of carrying a
    request: a 407 says whether credentials are missing or wrong."""
    reason = "".join(c for c in reason[:80] if c.isprintable()).strip()
    answer = f"HTTP {status} {reason}".rstrip()
    if status == 407 and proxy.credentials is None:
        fix = f"; it wants credentials: give them as user:password@ in {proxy.source}"
    elif status == 407:
        fix = f"; it rejected the credentials: fix the user:password@ in {proxy.source}"
    else:
        fix = f"; check that {proxy.source} names the right proxy and that it may reach there"
    return f"{proxy} refused to carry the request ({answer}){fix}"
