"""FullStory server API emulator: a real HTTP server on loopback for tests, demos and benchmarks.

API (header `Authorization: Basic <key>`): `GET /me`, `POST /v2/users`, `DELETE /v2/users?uid=`,
`POST /v2/events`, batch imports `POST /v2/{users|events}/batch`, `GET .../batch/{id}`,
`GET .../batch/{id}/imports|errors` (see `batch.py`). Bodies, answers and errors follow
FullStory's OpenAPI files (tests/data/fullstory-openapi/, checked by
tests/unit/test_openapi_schemas.py); `GET /me` answers `{"email", "orgId", "role"}`.
Control (no auth): `GET /emulator/requests[?all=1&since=SEQ&path=P]`, `GET /emulator/stats`,
`GET /emulator/users`, `GET|POST /emulator/faults`, `POST /emulator/reset`.
Run it with `serve(...)` or `python -m consumer.emulator --port 0`. docs/emulator.md lists every
choice made where FullStory's behaviour is unknown (here, in `validation.py` and `batch.py`).

Choices where FullStory's behaviour is unverified:
- `DELETE /v2/users?uid=` of a uid never created answers `200 {}` and is recorded (deletes are
  blind GDPR requests; the client cannot know whether the user exists); without a uid it answers
  the spec's own example, 400 `{"message": "uid is required", "code": "required_field"}`;
- the same `Idempotency-Key` with a different body answers 400 `invalid_argument`; keys are scoped
  per path and kept until reset (no 24-hour expiry). Only POSTs honour the header;
- `error_rate` and `reject_matching` apply to `/v2/...` endpoints, not to `GET /me`;
- a request dropped by a "refuse" outage is logged with status 0; an outage answers 503
  `server_error` (the specs declare only 500);
- each item of a finished batch job is logged as its own `POST /v2/users|events` request, with
  `batch_job` (the job id) and `idempotency_key` `<batch key>#<index>` (None without a batch key);
  failed items are logged with status 400 (seen with `?all=1`). The batch POST itself is logged
  under its own path. An idempotent replay of a batch POST creates and logs nothing new;
- server events are metered per API key as FullStory meters them: each stored `POST /v2/events`
  and each imported event item counts 1 (replays, users and deletes do not). Beyond
  `event_quota` (config, `--event-quota`, or `POST /emulator/faults`) an event is still answered
  and stored as usual, and counted in `over_quota`; `/emulator/stats` has both per key under
  `by_api_key`.
"""

from consumer.emulator.server import create_app, serve
from consumer.emulator.state import EmulatorConfig

__all__ = ["EmulatorConfig", "create_app", "serve"]
