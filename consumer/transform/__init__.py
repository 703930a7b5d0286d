"""Pure transform stage: Segment event + destination settings → Outcome (mapping-spec.md)."""

from consumer.transform.jsonlines import outcome_to_json, transform_lines
from consumer.transform.mapping import transform, transform_explained
from consumer.transform.outcome import Invalid, Outcome, Request, Requests, Skipped
from consumer.transform.settings import (
    BudgetSettings,
    DestinationSettings,
    PrivacySettings,
    SettingsError,
)

__all__ = [
    "BudgetSettings",
    "DestinationSettings",
    "Invalid",
    "Outcome",
    "PrivacySettings",
    "Request",
    "Requests",
    "SettingsError",
    "Skipped",
    "outcome_to_json",
    "transform",
    "transform_explained",
    "transform_lines",
]
