"""Confluent-compatible Schema Registry client: schema ids to parsed Avro schemas, registration.

Works with Confluent Schema Registry, Confluent Cloud (basic auth with an API key) and Apicurio's
`/apis/ccompat/v7` API. The secret of `basic.auth.user.info` (or of a URL's user info) is kept
out of every message, repr and log line this module makes, and so are a proxy's credentials:
requests go through the proxy `consumer.proxy` picks for the registry's URL, by the same rules
as FullStory's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import ssl
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import fastavro
import httpx

from consumer.proxy import ProxySettings, refusal


class SchemaNotFound(Exception):
    """The resolver has no schema under this id (permanent: the record is undecodable)."""


class InvalidSchema(Exception):
    """The resolver returned something that is not a usable Avro schema (permanent)."""


class RegistryUnavailable(Exception):
    """The schema registry could not answer now (retryable: do not dead-letter the record)."""


class SchemaPending(Exception):
    """The schema is being fetched off the event loop: read the record again shortly. Not a
    registry failure: nothing to back off from, nothing to dead-letter."""


class RegistryError(Exception):
    """The registry refused a request for a reason retrying will not fix (e.g. incompatible)."""


def parse_schema_text(text: str | bytes, where: str) -> Any:
    """Parse Avro schema JSON with fastavro; InvalidSchema naming `where` if it is not one."""
    try:
        return fastavro.parse_schema(json.loads(text))
    except Exception as exc:  # json or fastavro errors of many kinds
        raise InvalidSchema(f"{where}: not a valid Avro schema: {exc}") from exc


@dataclass(frozen=True)
class RegistrySettings:
    """How to reach a registry. Keys as confluent-kafka's SchemaRegistryClient names them."""

    url: str
    basic_auth_user_info: str | None = field(default=None, repr=False)
    ca_location: str | None = None
    certificate_location: str | None = None
    key_location: str | None = None
    key_password: str | None = field(default=None, repr=False)
    timeout: float = 5.0
    proxies: ProxySettings | None = None  # None: the environment's (consumer.proxy)

    @classmethod
    def from_mapping(cls, conf: dict[str, Any]) -> RegistrySettings:
        """From `{"url": ..., "basic.auth.user.info": "key:secret", "ssl.ca.location": ...}`."""
        known = {
            "url",
            "basic.auth.user.info",
            "basic.auth.credentials.source",
            "ssl.ca.location",
            "ssl.certificate.location",
            "ssl.key.location",
            "ssl.key.password",
            "timeout",
        }
        unknown = sorted(set(conf) - known)
        if unknown:
            raise ValueError(f"unknown schema registry settings: {', '.join(unknown)}")
        source = conf.get("basic.auth.credentials.source", "USER_INFO")
        if source not in ("USER_INFO", "URL"):
            raise ValueError(f"basic.auth.credentials.source {source!r}: use USER_INFO or URL")
        if "url" not in conf:
            raise ValueError("schema registry settings need 'url'")
        return cls(
            url=str(conf["url"]),
            basic_auth_user_info=conf.get("basic.auth.user.info"),
            ca_location=conf.get("ssl.ca.location"),
            certificate_location=conf.get("ssl.certificate.location"),
            key_location=conf.get("ssl.key.location"),
            key_password=conf.get("ssl.key.password"),
            timeout=float(conf.get("timeout", 5.0)),
        )


def _split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """`https://key:secret@host/x` → (`https://host/x`, (key, secret)), so no message shows it."""
    parts = urlsplit(url)
    if parts.username is None:
        return url.rstrip("/"), None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return clean.rstrip("/"), (unquote(parts.username), unquote(parts.password or ""))


def _user_info(value: str) -> tuple[str, str]:
    user, sep, secret = value.partition(":")
    if not sep or not user:
        raise ValueError("basic.auth.user.info must be 'user:secret'")
    return user, secret


def _ssl_context(settings: RegistrySettings) -> ssl.SSLContext | None:
    if not (settings.ca_location or settings.certificate_location or settings.key_location):
        return None
    context = ssl.create_default_context(cafile=settings.ca_location)
    if settings.certificate_location:
        context.load_cert_chain(
            settings.certificate_location, settings.key_location, settings.key_password
        )
    elif settings.key_location:
        raise ValueError("ssl.key.location needs ssl.certificate.location")
    return context


class RegistryClient:
    """REST calls to one registry: schemas by id (cached), registration (cached per subject)."""

    def __init__(
        self, settings: RegistrySettings | str, *, client: httpx.Client | None = None
    ) -> None:
        if isinstance(settings, str):
            settings = RegistrySettings(settings)
        self.url, url_auth = _split_credentials(settings.url)
        auth = url_auth
        if settings.basic_auth_user_info is not None:
            auth = _user_info(settings.basic_auth_user_info)
        verify: ssl.SSLContext | bool = _ssl_context(settings) or True
        proxies = settings.proxies or ProxySettings.read(None, os.environ)
        self.proxy = proxies.for_url(self.url)
        if client is None:
            # The client's one transport is built here, so the proxy is the one chosen above
            # and httpx does not apply its own reading of the environment's proxies on top.
            proxy = httpx.Proxy(self.proxy.url) if self.proxy else None
            client = httpx.Client(
                timeout=settings.timeout,
                auth=httpx.BasicAuth(*auth) if auth else None,
                transport=httpx.HTTPTransport(verify=verify, proxy=proxy),
                headers={"Accept": "application/vnd.schemaregistry.v1+json, application/json"},
            )
        self._client = client
        self._registered: dict[tuple[str, str], int] = {}

    def __repr__(self) -> str:
        return f"RegistryClient({self.url!r})"

    def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        url = f"{self.url}{path}"
        via = "" if self.proxy is None else f" through {self.proxy}"
        try:
            response = self._client.request(method, url, json=body)
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(
                f"{method} {url}{via} failed: {type(exc).__name__}: {exc}"
            ) from None
        status = response.status_code
        if status == 407 and self.proxy is not None:
            reason = refusal(self.proxy, status, response.reason_phrase)
            raise RegistryUnavailable(f"{method} {url}: {reason}")
        if status in (401, 403, 408, 429) or status >= 500:
            raise RegistryUnavailable(f"{method} {url} answered {status}: {response.text[:200]}")
        return response

    def schema_text(self, schema_id: int) -> str:
        """The schema text under a global id; SchemaNotFound, InvalidSchema, RegistryUnavailable."""
        path = f"/schemas/ids/{schema_id}"
        response = self._request("GET", path)
        if response.status_code == 404:
            raise SchemaNotFound(f"schema registry has no schema id {schema_id}")
        if response.status_code != 200:
            raise InvalidSchema(f"GET {path} answered {response.status_code}")
        try:
            body = response.json()
            text = body["schema"]
            schema_type = body.get("schemaType", "AVRO")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidSchema(f"GET {path}: unexpected response body: {exc!r}") from exc
        if schema_type != "AVRO":
            raise InvalidSchema(f"schema id {schema_id} is {schema_type}, not AVRO")
        if not isinstance(text, str):
            raise InvalidSchema(f"GET {path}: 'schema' is not a string")
        return text

    def register(self, subject: str, schema: str | dict[str, Any]) -> int:
        """Register (or look up) an Avro schema under `subject`; its global id.

        Registering the same schema again returns the existing id, as every registry does.
        """
        text = schema if isinstance(schema, str) else json.dumps(schema)
        cached = self._registered.get((subject, text))
        if cached is not None:
            return cached
        path = f"/subjects/{quote(subject, safe='')}/versions"
        response = self._request("POST", path, {"schema": text, "schemaType": "AVRO"})
        if response.status_code != 200:
            raise RegistryError(
                f"POST {path} answered {response.status_code}: {response.text[:500]}"
            )
        try:
            schema_id = int(response.json()["id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryError(f"POST {path}: unexpected response body: {exc!r}") from exc
        self._registered[(subject, text)] = schema_id
        return schema_id

    def set_compatibility(self, subject: str, level: str) -> None:
        """Set a subject's compatibility level (BACKWARD, FORWARD, FULL, NONE, ...)."""
        path = f"/config/{quote(subject, safe='')}"
        response = self._request("PUT", path, {"compatibility": level})
        if response.status_code != 200:
            raise RegistryError(f"PUT {path} answered {response.status_code}: {response.text}")

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()


class RegistrySchemaResolver:
    """Writer schemas by Confluent schema id from a registry, parsed once per id.

    404 and an unusable schema are permanent (SchemaNotFound, InvalidSchema, remembered for
    `negative_ttl` seconds so a burst of bad records does not hammer the registry); network
    errors, timeouts, 429, 5xx and auth failures are RegistryUnavailable: retrying (or fixing
    the credentials) will help, dead-lettering won't.

    `blocking=False` is for the event loop, where a request would stall every sender: a miss
    starts the fetch on a worker thread (one in flight per id) and raises SchemaPending at
    once; once the fetch is over, the next call returns the schema or raises the fetch's error
    (after a RegistryUnavailable the call after that starts a new fetch). Called from one
    thread then, the loop's.
    """

    def __init__(
        self,
        url: str | RegistrySettings,
        *,
        timeout: float = 5.0,
        auth: tuple[str, str] | None = None,
        negative_ttl: float = 30.0,
        client: httpx.Client | None = None,
        blocking: bool = True,
    ) -> None:
        settings = (
            url if isinstance(url, RegistrySettings) else RegistrySettings(url, timeout=timeout)
        )
        if auth is not None:
            settings = dataclasses.replace(settings, basic_auth_user_info=f"{auth[0]}:{auth[1]}")
        self.client = RegistryClient(settings, client=client)
        self._negative_ttl = negative_ttl
        self._cache: dict[int, Any] = {}
        self._refused: dict[int, tuple[float, type[Exception], str]] = {}
        self._lock = threading.Lock()
        # One worker: fetches hold the lock anyway, so more threads would only wait for it.
        self._fetcher = (
            None
            if blocking
            else ThreadPoolExecutor(max_workers=1, thread_name_prefix="schema-registry")
        )
        self._pending: dict[int, Future[Any]] = {}

    def writer_schema(self, schema_id: int) -> Any:
        """The parsed schema for this id, fetched at most once while it exists."""
        schema = self._cache.get(schema_id)
        if schema is not None:
            return schema
        if self._fetcher is None:
            return self._load(schema_id)
        pending = self._pending.get(schema_id)
        if pending is None:
            self._raise_if_refused(schema_id)  # at once: no fetch, no wait for a known bad id
            self._pending[schema_id] = self._fetcher.submit(self._load, schema_id)
            raise SchemaPending(f"schema id {schema_id} is being fetched")
        if not pending.done():
            raise SchemaPending(f"schema id {schema_id} is being fetched")
        del self._pending[schema_id]
        return pending.result()  # the schema, now cached, or the error the fetch ended with

    def _load(self, schema_id: int) -> Any:
        with self._lock:
            schema = self._cache.get(schema_id)
            if schema is None:
                schema = self._cache[schema_id] = self._fetch(schema_id)
        return schema

    def _raise_if_refused(self, schema_id: int) -> None:
        refused = self._refused.get(schema_id)
        if refused is not None and time.monotonic() < refused[0]:
            raise refused[1](refused[2])  # a new exception each time: tracebacks do not pile up

    def _fetch(self, schema_id: int) -> Any:
        self._raise_if_refused(schema_id)
        try:
            return parse_schema_text(self.client.schema_text(schema_id), f"schema id {schema_id}")
        except (SchemaNotFound, InvalidSchema) as exc:
            self._refused[schema_id] = (time.monotonic() + self._negative_ttl, type(exc), str(exc))
            raise

    def close(self) -> None:
        """Stop the fetch thread (a fetch under way ends within the timeout), close the client."""
        if self._fetcher is not None:
            self._fetcher.shutdown(wait=False, cancel_futures=True)
        self.client.close()
