"""Tools the integration tests need beyond the broker: skipped on a developer machine without
them, a failure under CI (where .ci/run installs them) so a missing tool cannot pass silently."""

from __future__ import annotations

import os

import pytest

from consumer.localenv.registry import registry_java


def require_registry_java() -> None:
    """Apicurio Registry runs on Java 21+ (found by `bash deploy/local/apicurio.sh java`)."""
    if registry_java() is not None:
        return
    reason = "no Java 21+ for Apicurio Registry (bash deploy/local/apicurio.sh java finds none)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set, so this is a failure, not a skip")
    pytest.skip(reason)
