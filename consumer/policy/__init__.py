"""Pure policy rules for what leaves (policy-spec.md): `privacy`, `events` selection and
sampling, budget cycles. Standard library only: consumer/transform/settings.py builds them from
the settings."""

from consumer.policy.cycle import CYCLES, Cycle, cycle_at
from consumer.policy.events import (
    EXCLUDED,
    NOT_INCLUDED,
    SAMPLE,
    SAMPLED_OUT,
    EventsRules,
    sample_key,
)
from consumer.policy.privacy import Action, PrivacyRules

__all__ = [
    "CYCLES",
    "EXCLUDED",
    "NOT_INCLUDED",
    "SAMPLE",
    "SAMPLED_OUT",
    "Action",
    "Cycle",
    "EventsRules",
    "PrivacyRules",
    "cycle_at",
    "sample_key",
]
