"""The root of every error a user can fix, so the command line reports each one the same way."""

from __future__ import annotations


class UserError(Exception):
    """A mistake or condition the user can fix: a bad option, file or input, a wrong API key or
    org, an unreachable broker. Its message says what is wrong and how to fix it, and never holds
    a secret; `fullstory-consumer` prints it as one `error:` line and exits with `exit_code` (2
    for what is wrong before anything runs, 1 for what fails once it runs)."""

    exit_code = 2
