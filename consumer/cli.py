"""`fullstory-consumer`: run the consumer, and the tools around it (backfill, budget estimate,
demo, produce, transform, emulator, dlq replay). Every error a user can fix (a `UserError`) is
printed as one line starting with `error:` (exit 2 for bad usage or configuration, 1 for a
failure at run time)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from consumer import __version__
from consumer.errors import UserError
from consumer.options import OPTIONS, Option

log = logging.getLogger("consumer")


def _kv(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    return key.strip(), val.strip()


def _flag_help(option: Option) -> str:
    """The option's help as the parser shows it: the docs' text, without Markdown."""
    text = option.help + (" (repeatable)" if option.kind in (list, dict) else "")
    if not option.required and option.default_text() != "none":
        text += f" (default: {option.default_text()})"
    if option.secret:
        text += f" (better: {option.env})"
    return text.replace("`", "")


def _add_config_options(p: argparse.ArgumentParser) -> None:
    """The run command's config flags, one per option that has a flag (consumer/options.py): `run`
    and every command that reads the same configuration take them."""
    for option in OPTIONS:
        if not option.flag:
            continue
        kwargs: dict[str, Any] = {"dest": option.name, "help": _flag_help(option)}
        if option.kind in (list, dict):
            kwargs["action"] = "append"
        if option.kind is dict:
            kwargs.update(type=_kv, metavar="KEY=VALUE")
        elif option.kind in (int, float):
            kwargs["type"] = option.kind
        if option.choices:
            kwargs["choices"] = option.choices
        p.add_argument(option.flag, **kwargs)


def _add_run(sub: Any) -> None:
    p = sub.add_parser("run", help="run a consumer-group member that sends events to FullStory")
    _add_config_options(p)


def _add_window(p: argparse.ArgumentParser, until: str) -> None:
    """A past window's `--since` and `--until` (the estimate and the backfill read one)."""
    p.add_argument(
        "--since",
        required=True,
        metavar="DURATION|ISO",
        help="window start: a duration back from now (7d, 24h, 90m) or an ISO-8601 instant "
        "(UTC without a zone)",
    )
    p.add_argument("--until", metavar="ISO", help=f"window end (default: {until})")


def _add_backfill(sub: Any) -> None:
    p = sub.add_parser(
        "backfill",
        help="send a past window of the topics to FullStory (batch import), then exit",
        description="Reads the destinations' records of a past window through the same "
        "pipeline as `run` (privacy, mapping, `events`, the destination group's budget) and "
        "sends them by batch import, committing under a group of its own: run it again with "
        "the same arguments to continue after a crash or Ctrl-C.",
    )
    _add_config_options(p)
    _add_window(p, "the topics' end when it starts")
    p.add_argument(
        "--backfill-group",
        metavar="G",
        help="the group the backfill commits under (default: <group_id>.backfill.<since>)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the budget estimate of the window and send nothing",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document")


def _add_budget(sub: Any) -> None:
    """`budget <command>`: each takes the run command's config options."""
    p = sub.add_parser("budget", help="FullStory server-event budget tools")
    budget = p.add_subparsers(dest="budget_command", required=True)
    p = budget.add_parser(
        "estimate",
        help="what the destinations would have sent over a past window, and per budget cycle",
        description="Reads the topics over a past window without joining the group or "
        "committing, maps the events and applies `events` (not `budget`).",
    )
    _add_config_options(p)
    _add_window(p, "now")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p = budget.add_parser(
        "status",
        help="each destination's budget as the group's accounting has it",
        description="Reads the group's budget topic without joining the group: used / limit, "
        "the cycle, and when the budget runs out at the last hour's rate.",
    )
    _add_config_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON array")


def _add_tools(sub: Any) -> None:
    p = sub.add_parser("produce", help="encode Segment events (JSON lines) as Avro and produce")
    p.add_argument("--bootstrap-servers", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--file", required=True, help="JSON lines of Segment events, or - for stdin")
    p.add_argument("--framing", choices=("raw", "confluent"), default="raw")
    p.add_argument("--schema-id", type=int, help="schema id for the confluent framing")
    p.add_argument(
        "--register",
        metavar="REGISTRY_URL",
        help="register the repo's schema under <topic>-value and use its id (confluent framing)",
    )

    p = sub.add_parser("transform", help="print what would be sent for Segment events on stdin")
    p.add_argument("--settings", help="destination settings JSON")
    p.add_argument(
        "--explain",
        action="store_true",
        help='add to each line a "privacy" list of the rules applied (path, action, rule)',
    )

    p = sub.add_parser("emulator", help="run the FullStory API emulator")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--api-key", action="append", help="accepted key (repeatable)")
    p.add_argument("--org-id", default="o-TEST-na1")
    p.add_argument("--rate-limit", type=float, help="requests per second per key")
    p.add_argument("--burst", type=int, default=50)
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument(
        "--event-quota",
        type=int,
        help="server events per API key before the excess is counted as over_quota (still stored)",
    )
    p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this PEM certificate")
    p.add_argument("--tls-key", metavar="FILE", help="its PEM key (default: in --tls-cert)")

    p = sub.add_parser("dlq", help="dead-letter topic tools")
    dlq = p.add_subparsers(dest="dlq_command", required=True)
    p = dlq.add_parser("replay", help="send dead-lettered records back to their topics")
    p.add_argument("--bootstrap-servers", required=True)
    p.add_argument("--topic", required=True, help="the dead-letter topic, e.g. events.dlq")
    p.add_argument("--since", help="only records dead-lettered at or after this ISO-8601 time")
    p.add_argument("--reason", help="only records dead-lettered for this reason")
    p.add_argument("--dry-run", action="store_true", help="count, do not produce")
    p.add_argument(
        "-X",
        dest="kafka",
        type=_kv,
        action="append",
        help="librdkafka setting KEY=VALUE (repeatable)",
    )

    p = sub.add_parser("demo", help="broker + emulator + sample events, end to end")
    p.add_argument("--events", help="JSON lines of Segment events (default: the sample file)")
    p.add_argument("--settings", help="destination settings JSON (default: the demo settings)")
    p.add_argument("--timeout", type=float, default=120.0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fullstory-consumer", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_backfill(sub)
    _add_budget(sub)
    _add_tools(sub)
    return parser


async def _run_pipeline(config: Any) -> None:
    from consumer.app import Pipeline

    pipeline = Pipeline(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, pipeline.stop)
    server = None
    if config.metrics.port:
        from consumer.health import serve

        server = serve(pipeline.metrics, pipeline.health, config.metrics.port)
    try:
        await pipeline.run()
    finally:
        if server is not None:
            server.shutdown()


def _config(args: argparse.Namespace, **forced: Any) -> Any:
    """The checked Config from the config flags `_add_config_options` added (and the file and
    environment they name); `forced` options win over all of them."""
    from consumer.config import load_config

    flags = {o.name: getattr(args, o.name) for o in OPTIONS if o.flag}
    flags["kafka"] = dict(args.kafka or [])
    return load_config({**flags, **forced})


def cmd_run(args: argparse.Namespace) -> int:
    from consumer.logs import setup_logging

    config = _config(args)
    setup_logging(config.logs.format)
    asyncio.run(_run_pipeline(config))
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    import orjson

    from consumer.app import decoder_for
    from consumer.backfill import (
        BackfillError,
        backfill,
        backfill_config,
        backfill_group,
        document,
        plan_backfill,
        render,
        stop_reason,
    )
    from consumer.estimate import estimate, iso, parse_window
    from consumer.estimate import render as render_estimate
    from consumer.logs import setup_logging

    now = datetime.now(UTC)
    window = parse_window(args.since, args.until, now)
    # Always batch import; a group without commits starts at --since.
    config = _config(args, delivery="batch", start_from=iso(window.start))
    group = args.backfill_group or backfill_group(config.kafka.group_id, args.since, window)
    plan = plan_backfill(config, window, group, now)
    if args.dry_run:
        doc = estimate(config, window, decoder_for(config))
        print(orjson.dumps(doc).decode() if args.json else render_estimate(doc))
        return 0
    setup_logging(config.logs.format)
    run_config = backfill_config(config, group)
    summary = asyncio.run(backfill(run_config, plan))
    doc = document(plan, summary)
    print(orjson.dumps(doc).decode() if args.json else render(doc))
    reason = stop_reason(plan, summary, run_config)
    if reason is not None:
        raise BackfillError(reason)
    return 0


def cmd_budget_estimate(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    import orjson

    from consumer.app import decoder_for
    from consumer.estimate import estimate, parse_window, render

    window = parse_window(args.since, args.until, datetime.now(UTC))
    config = _config(args)
    doc = estimate(config, window, decoder_for(config))
    print(orjson.dumps(doc).decode() if args.json else render(doc))
    return 0


def cmd_budget_status(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    import orjson

    from consumer.app import budget_topic, connection_settings
    from consumer.budget_log import read_book
    from consumer.budget_status import statuses

    config = _config(args)
    book = read_book(connection_settings(config), budget_topic(config))
    found = statuses(config, book, datetime.now(UTC))
    if not found:
        raise UserError("no destination has a budget; add a `budget` object to its settings")
    if args.json:
        print(orjson.dumps([s.as_json() for s in found]).decode())
    else:
        print("\n".join(s.line() for s in found))
    return 0


BUDGET_COMMANDS = {"estimate": cmd_budget_estimate, "status": cmd_budget_status}


def cmd_budget(args: argparse.Namespace) -> int:
    return BUDGET_COMMANDS[args.budget_command](args)


def cmd_produce(args: argparse.Namespace) -> int:
    from consumer.produce import produce_file

    if args.register and args.schema_id is not None:
        raise UserError("give either --register or --schema-id, not both")
    count = produce_file(
        args.bootstrap_servers,
        args.topic,
        args.file,
        args.framing,
        args.schema_id,
        register=args.register,
    )
    print(f"produced {count} events to {args.topic}")
    return 0


def load_settings(path: str | None) -> Any:
    """Destination settings from a JSON file (unknown keys reported on stderr)."""
    from consumer.config import read_settings_file
    from consumer.transform import DestinationSettings

    data = read_settings_file(Path(path)) if path else {}
    settings, unknown = DestinationSettings.from_mapping(data)
    if unknown:
        print(f"warning: unknown settings ignored: {', '.join(unknown)}", file=sys.stderr)
    return settings


def cmd_transform(args: argparse.Namespace) -> int:
    from consumer.transform import transform_lines

    settings = load_settings(args.settings)
    out = sys.stdout.buffer
    for line in transform_lines(sys.stdin.buffer, settings, explain=args.explain):
        out.write(line)
        out.write(b"\n")
    out.flush()
    return 0


def _require_tools(command: str) -> None:
    """The emulator (and the demo, which runs it) needs aiohttp, which the service does not:
    it comes with the `tools` extra."""
    try:
        importlib.import_module("aiohttp")
    except ImportError:
        raise UserError(
            f"`fullstory-consumer {command}` needs the tools extra (aiohttp): "
            "pip install 'segment-fullstory-consumer[tools]', or in a checkout "
            "pip install -e '.[tools]'"
        ) from None


def cmd_emulator(args: argparse.Namespace) -> int:
    _require_tools("emulator")
    from consumer.emulator import EmulatorConfig, serve
    from consumer.emulator.server import tls_context

    if args.tls_key and not args.tls_cert:
        raise UserError("--tls-key needs --tls-cert (the certificate it belongs to)")

    config = EmulatorConfig(
        api_keys=tuple(args.api_key or ("test-key",)),
        org_id=args.org_id,
        rate_limit=args.rate_limit,
        burst=args.burst,
        error_rate=args.error_rate,
        latency_ms=args.latency_ms,
        event_quota=args.event_quota,
    )
    tls = tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    serve(config, host=args.host, port=args.port, tls=tls)
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from consumer.replay import replay_dlq

    since_ms = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since.replace("Z", "+00:00"))
        except ValueError:
            raise UserError(f"--since must be an ISO-8601 time, got {args.since!r}") from None
        since_ms = int((since if since.tzinfo else since.replace(tzinfo=UTC)).timestamp() * 1000)
    summary = replay_dlq(
        args.bootstrap_servers,
        args.topic,
        since_ms=since_ms,
        reason=args.reason,
        dry_run=args.dry_run,
        kafka=dict(args.kafka or []),
    )
    verb = "would replay" if args.dry_run else "replayed"
    print(
        f"read {summary.read} dead-lettered records; {verb} {summary.replayed}, "
        f"skipped {summary.skipped}"
    )
    for topic, n in sorted(summary.by_topic.items()):
        print(f"  to {topic}: {n}")
    for reason, n in sorted(summary.by_reason.items()):
        print(f"  reason {reason}: {n}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    _require_tools("demo")
    from consumer.demo import run_demo

    return run_demo(events=args.events, settings=args.settings, timeout=args.timeout)


COMMANDS = {
    "run": cmd_run,
    "backfill": cmd_backfill,
    "budget": cmd_budget,
    "produce": cmd_produce,
    "transform": cmd_transform,
    "emulator": cmd_emulator,
    "demo": cmd_demo,
    "dlq": cmd_dlq,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; a UserError becomes its one `error:` line and exit code."""
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # Ctrl-C in a tool (run and the emulator stop on SIGINT themselves)
        return 130


if __name__ == "__main__":
    sys.exit(main())
