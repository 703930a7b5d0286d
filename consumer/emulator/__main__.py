"""`python -m consumer.emulator`: run the emulator from a shell, a benchmark or a test."""

from __future__ import annotations

import argparse

from consumer.emulator.server import serve, tls_context
from consumer.emulator.state import EmulatorConfig


def main(argv: list[str] | None = None) -> None:
    """Parse flags into an EmulatorConfig and serve until SIGTERM/SIGINT."""
    defaults = EmulatorConfig()
    parser = argparse.ArgumentParser(prog="python -m consumer.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument(
        "--api-key", action="append", dest="api_keys", help="accepted key (repeatable)"
    )
    parser.add_argument("--org-id", default=defaults.org_id)
    parser.add_argument("--rate-limit", type=float, default=None, help="requests/s per key")
    parser.add_argument("--burst", type=int, default=defaults.burst)
    parser.add_argument("--error-rate", type=float, default=defaults.error_rate)
    parser.add_argument("--latency-ms", type=float, default=defaults.latency_ms)
    parser.add_argument(
        "--event-quota", type=int, default=None, help="server events per key (excess counted)"
    )
    parser.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this PEM certificate")
    parser.add_argument("--tls-key", metavar="FILE", help="its PEM key (default: in --tls-cert)")
    args = parser.parse_args(argv)
    if args.tls_key and not args.tls_cert:
        parser.error("--tls-key needs --tls-cert (the certificate it belongs to)")
    config = EmulatorConfig(
        api_keys=tuple(args.api_keys) if args.api_keys else defaults.api_keys,
        org_id=args.org_id,
        rate_limit=args.rate_limit,
        burst=args.burst,
        error_rate=args.error_rate,
        latency_ms=args.latency_ms,
        event_quota=args.event_quota,
    )
    serve(
        config,
        args.host,
        args.port,
        tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None,
    )


if __name__ == "__main__":
    main()
