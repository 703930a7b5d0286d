"""One FullStory client per destination, each key checked with `GET /me` before any record is
read, so a wrong key or org stops start-up instead of dead-lettering every record."""

from __future__ import annotations

import logging

from consumer.config import Config
from consumer.metrics import Metrics
from consumer.sink.client import FullStoryClient

log = logging.getLogger(__name__)


def warn_settings(config: Config) -> None:
    """Destination settings that are accepted but do nothing here."""
    for dest in config.destinations:
        if dest.unknown_settings:
            log.warning(
                "unknown destination settings ignored",
                extra={"destination": dest.name, "keys": list(dest.unknown_settings)},
            )
        if dest.settings.record_only_this_iframe:
            log.warning(
                "recordOnlyThisIFrame only affects FullStory's browser snippet; it has no "
                "effect on server-side delivery",
                extra={"destination": dest.name},
            )


def _concurrency(config: Config) -> tuple[int, int | None]:
    """A client's sockets and its fewest requests in flight: adaptive in realtime; in batch
    fixed (None), with room for every import job's create and status requests."""
    delivery = config.delivery
    if delivery.mode == "realtime":
        return delivery.concurrency, delivery.min_concurrency
    return max(delivery.concurrency, 2 * config.batch.max_jobs + 1), None


async def open_clients(
    config: Config, metrics: Metrics, clients: dict[str, FullStoryClient]
) -> None:
    """Fill `clients` as each one opens, so that the caller closes every opened client even
    when a later key is refused."""
    tls = config.fullstory_tls()
    connections, minimum = _concurrency(config)
    for dest in config.destinations:
        settings = dest.settings
        assert settings.api_key  # checked by load_config
        proxy = config.proxies.for_url(settings.resolved_api_host)
        client = FullStoryClient(
            settings.resolved_api_host,
            settings.api_key,
            metrics,
            timeout=config.delivery.request_timeout,
            connections=connections,
            min_concurrency=minimum,
            destination=dest.name,
            proxy=proxy,
            ssl_context=tls,
        )
        clients[dest.name] = client
        org = await client.check_credentials(settings.org)
        log.info(
            "FullStory credentials accepted",
            extra={
                "destination": dest.name,
                "org": org,
                "api_host": settings.resolved_api_host,
                "proxy": proxy.address if proxy else None,  # never its credentials
            },
        )
