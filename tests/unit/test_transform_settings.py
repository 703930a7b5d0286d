"""Destination settings: defaults, Segment's camelCase export, errors that say how to fix."""

from __future__ import annotations

import pytest

from consumer.transform import DestinationSettings, SettingsError


def test_defaults_match_the_spec_table() -> None:
    settings = DestinationSettings()
    assert settings == DestinationSettings(
        api_key=None,
        org=None,
        api_host=None,
        debug=False,
        record_only_this_iframe=False,
        track_all_pages=False,
        track_named_pages=False,
        track_categorized_pages=False,
        track_pages_with_events=True,
        anonymous_identify="send",
        use_recent_session=False,
        send_context=True,
        track_groups=False,
        process_deletes=True,
    )
    assert settings.resolved_api_host == "https://api.fullstory.com"


def test_segment_export_in_camel_case_loads_as_is() -> None:
    exported = {
        "apiKey": "na1.secret-key",
        "org": "o-1ABC-na1",
        "debug": True,
        "recordOnlyThisIFrame": True,
        "trackAllPages": True,
        "trackNamedPages": True,
        "trackCategorizedPages": True,
        "trackPagesWithEvents": False,
        "useRecentSession": True,
    }
    settings, unknown = DestinationSettings.from_mapping(exported)
    assert unknown == []
    assert settings == DestinationSettings(
        api_key="na1.secret-key",
        org="o-1ABC-na1",
        debug=True,
        record_only_this_iframe=True,
        track_all_pages=True,
        track_named_pages=True,
        track_categorized_pages=True,
        track_pages_with_events=False,
        use_recent_session=True,
    )


def test_snake_case_and_the_service_only_settings() -> None:
    settings, unknown = DestinationSettings.from_mapping(
        {
            "api_key": "k",
            "org": "o-1",
            "api_host": "http://127.0.0.1:8080/",
            "anonymous_identify": "UID",
            "send_context": False,
            "track_groups": True,
            "process_deletes": False,
        }
    )
    assert unknown == []
    assert settings.api_host == "http://127.0.0.1:8080"
    assert settings.anonymous_identify == "uid"
    assert (settings.send_context, settings.track_groups, settings.process_deletes) == (
        False,
        True,
        False,
    )
    camel, _ = DestinationSettings.from_mapping(
        {
            "anonymousIdentify": "skip",
            "sendContext": False,
            "trackGroups": True,
            "apiHost": "https://x",
        }
    )
    assert (camel.anonymous_identify, camel.send_context, camel.track_groups) == (
        "skip",
        False,
        True,
    )
    assert camel.api_host == "https://x"


def test_org_id_is_an_alias_of_org() -> None:
    settings, _ = DestinationSettings.from_mapping({"orgId": "o-2"})
    assert settings.org == "o-2"
    same, _ = DestinationSettings.from_mapping({"org": "o-2", "orgId": "o-2"})
    assert same.org == "o-2"
    with pytest.raises(SettingsError, match="'org' and 'orgId'"):
        DestinationSettings.from_mapping({"org": "o-2", "orgId": "o-3"})


def test_unknown_keys_are_returned_in_order() -> None:
    settings, unknown = DestinationSettings.from_mapping(
        {"zeta": 1, "trackAllPages": True, "alpha": None, "TrackAllPages": True}
    )
    assert unknown == ["zeta", "alpha", "TrackAllPages"]
    assert settings.track_all_pages is True


@pytest.mark.parametrize(
    ("data", "key", "expected"),
    [
        ({"trackAllPages": "true"}, "trackAllPages", "boolean"),
        ({"debug": 1}, "debug", "boolean"),
        ({"track_groups": None}, "track_groups", "boolean"),
        ({"org": 5}, "org", "string"),
        ({"apiHost": ["x"]}, "apiHost", "string"),
        ({"anonymous_identify": "maybe"}, "anonymous_identify", '"send", "skip" or "uid"'),
        ({"anonymousIdentify": True}, "anonymousIdentify", '"send", "skip" or "uid"'),
        ({"api_host": "api.fullstory.com"}, "api_host", "http(s) URL"),
    ],
)
def test_wrong_types_name_the_key_the_type_and_the_fix(
    data: dict[str, object], key: str, expected: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        DestinationSettings.from_mapping(data)
    message = str(caught.value)
    assert repr(key) in message
    assert expected in message
    assert ":" in message.split(expected, 1)[1]  # followed by how to fix it


def test_api_key_value_never_appears_in_errors_or_repr() -> None:
    secret = "na1.VERY-SECRET-VALUE"
    with pytest.raises(SettingsError) as caught:
        DestinationSettings.from_mapping({"apiKey": [secret]})
    assert secret not in str(caught.value)
    assert "'apiKey'" in str(caught.value)
    with pytest.raises(SettingsError) as conflict:
        DestinationSettings.from_mapping({"apiKey": secret, "api_key": secret + "2"})
    assert secret not in str(conflict.value)
    settings, _ = DestinationSettings.from_mapping({"apiKey": secret})
    assert settings.api_key == secret
    assert secret not in repr(settings)
    assert secret not in str(settings)
    assert "api_key='***'" in repr(settings)
    assert "api_key=None" in repr(DestinationSettings())


def test_text_settings_are_stripped_and_empty_means_unset() -> None:
    settings, _ = DestinationSettings.from_mapping({"apiKey": "  key\n", "orgId": ""})
    assert settings.api_key == "key"
    assert settings.org is None


def test_settings_must_be_an_object() -> None:
    with pytest.raises(SettingsError, match="must be an object"):
        DestinationSettings.from_mapping(["apiKey"])  # type: ignore[arg-type]


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(SettingsError, match="anonymous_identify"):
        DestinationSettings(anonymous_identify="never")
    with pytest.raises(SettingsError, match="track_all_pages"):
        DestinationSettings(track_all_pages="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("org", "api_host", "expected"),
    [
        ("o-1ABC-eu1", None, "https://api.eu1.fullstory.com"),
        ("o-1ABC-EU1", None, "https://api.eu1.fullstory.com"),
        ("o-1ABC-na1", None, "https://api.fullstory.com"),
        ("o-eu1-na1", None, "https://api.fullstory.com"),
        (None, None, "https://api.fullstory.com"),
        ("o-1ABC-eu1", "http://127.0.0.1:9", "http://127.0.0.1:9"),
    ],
)
def test_resolved_api_host(org: str | None, api_host: str | None, expected: str) -> None:
    assert DestinationSettings(org=org, api_host=api_host).resolved_api_host == expected
