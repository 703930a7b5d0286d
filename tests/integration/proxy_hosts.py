"""A proxy.py plugin for the proxy tests: host names under `.test` resolve to 127.0.0.1 in the
proxy, and nowhere else, so a request to one that arrives was carried by the proxy."""

from __future__ import annotations

from proxy.http.parser import HttpParser
from proxy.http.proxy import HttpProxyBasePlugin


class LoopbackTestHosts(HttpProxyBasePlugin):
    """`*.test` → 127.0.0.1; every other name as the system resolves it."""

    def resolve_dns(self, host: str, port: int) -> tuple[str | None, None]:
        return ("127.0.0.1" if host.endswith(".test") else None), None

    def before_upstream_connection(self, request: HttpParser) -> HttpParser:
        return request

    def handle_client_request(self, request: HttpParser) -> HttpParser:
        return request

    def on_upstream_connection_close(self) -> None:
        pass
