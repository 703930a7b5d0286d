"""FullStory server API emulator: a real HTTP server on loopback for tests, demos and benchmarks.

Choices where FullStory's behaviour is unverified:
- `DELETE /v2/users?uid=` of a uid never created answers `200 {}` and is recorded (deletes are
  blind GDPR requests; the client cannot know whether the user exists).
- A bad property rejects the whole request with 400 `invalid_argument`.
- The same `Idempotency-Key` with a different body answers 400 `invalid_argument`; keys are scoped
  per path and kept until reset (no 24-hour expiry).
- `error_rate` and `reject_matching` apply to `/v2/...` endpoints, not to `GET /me`.
"""

from consumer.emulator.server import create_app, serve
from consumer.emulator.state import EmulatorConfig

__all__ = ["EmulatorConfig", "create_app", "serve"]
