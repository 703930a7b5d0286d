"""The emulator's answers and the consumer's requests against FullStory's own OpenAPI files.

The specs (tests/data/fullstory-openapi/) are Swagger 2.0, whose schemas are JSON Schema Draft 4:
each is checked with jsonschema's Draft4Validator over the spec's `definitions` (formats ignored:
`"ISO 8601 string"` is no JSON Schema format). The specs never set `additionalProperties`, so a
walk of the schema (`undeclared`) also refuses any field they do not declare.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft4Validator
from test_emulator_batch import Client, call, control, finished, run

from consumer.emulator import EmulatorConfig
from consumer.sink.batch import KINDS
from consumer.transform import DestinationSettings, Request, Requests, transform

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "tests" / "data" / "fullstory-openapi"
SAMPLES = [
    ROOT / "schemas" / "sample-events.jsonl",
    *sorted((ROOT / "tests/data/captured").glob("*.jsonl")),
]
USERS, EVENTS = "users.sdk.swagger.json", "events.swagger.json"
# The specs' examples carry `"schema": null, "type_conflicts": null` in every user (imports and
# the echo of a failed user, whose BatchUserImportRequest does not even declare type_conflicts),
# which the Draft 4 schemas refuse: FullStory's JSON writes unset message fields as null.
NULLABLE_IN_EXAMPLES = {
    "fullstory.v2.users.BatchUserImportResponse": ("schema", "type_conflicts"),
    "fullstory.v2.users.BatchUserImportRequest": ("schema", "type_conflicts"),
}
NULL_TYPE_CONFLICTS = {"$ref": "#/definitions/fullstory.v2.varsapi.TypeConflict"}
# An error item echoes the item that failed, often for breaking a constraint of the request
# definition the spec reuses for the echo: there only the echo's shape and types can hold.
ECHOES = {
    "fullstory.v2.users.GetBatchUserImportErrorsResponse.FailedUserImport": "user",
    "fullstory.v2.events.GetBatchEventsImportErrorsResponse.FailedEventsImport": "event",
}
CONSTRAINTS = frozenset(("required", "maxLength", "maxProperties"))
RELAXED = "relaxed."


@cache
def spec(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SPECS / name).read_text())
    return data


@cache
def definitions(name: str) -> dict[str, Any]:
    """The spec's definitions, with the nulls its own examples show allowed."""
    out = json.loads(json.dumps(spec(name)["definitions"]))
    for definition, fields in NULLABLE_IN_EXAMPLES.items():
        if definition not in out:
            continue
        props = out[definition]["properties"]
        for field in fields:
            props[field] = {"anyOf": [{"type": "null"}, props.get(field, NULL_TYPE_CONFLICTS)]}
    for key, definition in list(out.items()):
        out[RELAXED + key] = relaxed(definition)
    for definition, field in ECHOES.items():
        if definition in out:
            echo = out[definition]["properties"][field]
            echo["$ref"] = echo["$ref"].replace("#/definitions/", "#/definitions/" + RELAXED)
    return dict(out)


def relaxed(schema: Any) -> Any:
    """A copy without constraint keywords, whose references lead to relaxed copies too."""
    if isinstance(schema, list):
        return [relaxed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: relaxed(value) for key, value in schema.items() if key not in CONSTRAINTS}
    if "$ref" in out:
        out["$ref"] = out["$ref"].replace("#/definitions/", "#/definitions/" + RELAXED)
    return out


def resolve(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = definitions(name)[schema["$ref"].removeprefix("#/definitions/")]
    return schema


def undeclared(name: str, schema: dict[str, Any], value: Any, where: str = "") -> Iterator[str]:
    """Paths of fields in `value` that the schema does not declare (free-form objects aside)."""
    schema = resolve(name, schema)
    if "anyOf" in schema:
        if value is None:
            return
        (schema,) = [resolve(name, s) for s in schema["anyOf"] if s.get("type") != "null"]
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            declared = schema["properties"].get(key)
            if declared is None:
                yield f"{where}.{key}"
            else:
                yield from undeclared(name, declared, item, f"{where}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from undeclared(name, schema["items"], item, f"{where}[{index}]")


def check(name: str, schema: dict[str, Any], value: Any) -> None:
    """`value` is valid against the spec's schema and holds no undeclared field."""
    root = {"definitions": definitions(name), **schema}
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in Draft4Validator(root).iter_errors(value)
    ]
    assert not errors, errors
    assert list(undeclared(name, schema, value)) == []


def check_definition(name: str, definition: str, value: Any) -> None:
    check(name, {"$ref": f"#/definitions/{definition}"}, value)


def check_answer(name: str, template: str, method: str, status: int, body: Any) -> None:
    """An answer against the response the spec declares for that path, method and status."""
    responses = spec(name)["paths"][template][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {template} declares no {status}"
    check(name, responses[str(status)]["schema"], body)


def test_the_specs_examples_show_null_user_schemas() -> None:
    """Why NULLABLE_IN_EXAMPLES exists: remove it when the specs stop showing these nulls."""
    users = spec(USERS)["definitions"]
    failed = users["fullstory.v2.users.GetBatchUserImportErrorsResponse.FailedUserImport"]
    imported = users["fullstory.v2.users.GetBatchUserImportsResponse"]["example"]["results"]
    for user in (failed["example"]["user"], *imported):
        assert (user["schema"], user["type_conflicts"]) == (None, None)
    failed_user = {"message": "m", "code": "c", "user": failed["example"]["user"]}
    plain = {"definitions": users, "$ref": failed["properties"]["user"]["$ref"]}
    assert not Draft4Validator(plain).is_valid(failed_user["user"])
    check_definition(
        USERS, "fullstory.v2.users.GetBatchUserImportErrorsResponse.FailedUserImport", failed_user
    )


def test_the_checks_catch_what_they_must() -> None:
    """The checks can fail: a type error, a missing required field, an undeclared field."""
    event = "fullstory.v2.events.CreateEventRequest"
    for bad in ({"name": 1}, {}, {"name": "a", "index": 0}, {"name": "a", "user": {"email": "e"}}):
        with pytest.raises(AssertionError):
            check_definition(EVENTS, event, bad)
    with pytest.raises(AssertionError):
        check_definition(USERS, "fullstory.v2.users.CreateUserRequest", {"uid": "u" * 257})


# -- the emulator's answers ------------------------------------------------------------------

BATCH_STATUS = "/v2/{kind}/batch/{{job_id}}"


async def answer(
    client: Client, name: str, template: str, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    """Call the emulator and check its answer against the spec; return status and body."""
    status, payload, _ = await call(client, method, path, body)
    check_answer(name, template, method, status, payload)
    return status, payload


def test_single_endpoints_answer_as_the_spec_says() -> None:
    async def scenario(client: Client) -> None:
        u, e = "/v2/users", "/v2/events"
        status, created = await answer(client, USERS, u, "POST", u, {"uid": "u1", "email": "a@b"})
        assert status == 200 and set(created) == {"id"}
        many = {"uid": "u", "properties": {f"p{i}": i for i in range(501)}}
        for bad in ({"uid": "u" * 257}, {"display_name": 1}, many, {"id": "1"}):
            assert (await answer(client, USERS, u, "POST", u, bad))[0] == 400
        assert await answer(client, EVENTS, e, "POST", e, {"name": "a"}) == (200, {})
        for bad in ({}, {"name": ""}, {"name": "a", "user": {"uid": "u" * 257}}):
            assert (await answer(client, EVENTS, e, "POST", e, bad))[0] == 400
        assert await answer(client, USERS, u, "DELETE", u + "?uid=u1") == (200, {})
        assert (await answer(client, USERS, u, "DELETE", u))[1]["code"] == "required_field"
        response = await client.post(e, data=b"{}", headers={"Authorization": "Basic nope"})
        check_answer(EVENTS, e, "POST", response.status, orjson.loads(await response.read()))
        assert response.status == 401
        await control(client, "/emulator/faults", {"error_rate": 1.0})
        assert (await answer(client, USERS, u, "POST", u, {}))[0] == 500
        await control(
            client, "/emulator/faults", {"error_rate": 0.0, "rate_limit": 0.001, "burst": 1}
        )
        statuses = [(await answer(client, EVENTS, e, "POST", e, {"name": "a"}))[0] for _ in "ab"]
        assert statuses == [200, 429]

    run(scenario)


def test_me_answers_as_fullstory_api_md_says() -> None:
    """`GET /me` is in neither spec: `{"email", "orgId", "role"}`, errors as everywhere."""

    async def scenario(client: Client) -> None:
        status, payload, _ = await call(client, "GET", "/me")
        assert status == 200 and set(payload) == {"email", "orgId", "role"}
        assert all(isinstance(value, str) for value in payload.values())
        response = await client.get("/me")
        assert response.status == 401
        check_definition(USERS, "fullstory.v2.apierror.ErrorResponse", await response.json())

    run(scenario)


@pytest.mark.parametrize(
    ("kind", "name", "good", "bad"),
    [
        pytest.param(
            "users",
            USERS,
            [
                {"uid": "u1", "display_name": "One", "email": "1@x", "properties": {"a": {"b": 1}}},
                {"uid": "u2", "schema": {"properties": {"n": "int"}}, "properties": {"n": 1}},
                {"display_name": "anonymous"},
            ],
            [{"uid": ""}, {"uid": "u" * 257}, {"uid": "s", "schema": {"properties": {"x": "int"}}}],
            id="users",
        ),
        pytest.param(
            "events",
            EVENTS,
            [
                {"name": "a", "user": {"uid": "u1"}, "properties": {"n": 1}},
                {"name": "b", "session": {"id": "1:2"}, "timestamp": "2024-05-01T00:00:00Z"},
                {"name": "c", "user": {"uid": "u9"}, "session": {"use_most_recent": True}},
            ],
            [{}, {"name": "a", "user": {"uid": "u" * 257}}, {"name": "a", "context": {}}],
            id="events",
        ),
    ],
)
def test_batch_endpoints_answer_as_the_spec_says(
    kind: str, name: str, good: list[Any], bad: list[Any]
) -> None:
    base = f"/v2/{kind}/batch"
    status_path = base + "/{job_id}"

    async def scenario(client: Client) -> None:
        await call(client, "POST", "/v2/users", {"uid": "u1"})
        body: dict[str, Any] = {"requests": good + bad}
        if kind == "events":
            body["shared"] = {"context": {"browser": {"url": "https://x.example/"}}}
        status, created = await answer(client, name, base, "POST", base, body)
        assert status == 200
        job = base + "/" + created["job"]["id"]
        status, processing = await answer(client, name, status_path, "GET", job)
        assert processing["job"]["status"] == "PROCESSING"
        for which in ("imports", "errors"):
            status, payload, _ = await call(client, "GET", f"{job}/{which}")
            check_answer(name, f"{status_path}/{which}", "GET", status, payload)
            assert (status, payload) == (202, {})
        await finished(client, kind, created["job"]["id"])
        status, done = await answer(client, name, status_path, "GET", job)
        assert (done["imports"], done["errors"], done["job"]["status"]) == (3, 3, "FAILED")
        pages = 0
        for which, query in (("imports", ""), ("imports", "include_schema=true&"), ("errors", "")):
            token = ""
            while True:
                path = f"{job}/{which}?{query}page_token={token}"
                status, page = await answer(client, name, f"{status_path}/{which}", "GET", path)
                assert status == 200 and page["total_records"] == "3"
                pages += 1
                token = page.get("next_page_token", "")
                if not token:
                    break
        assert pages == 6  # pages of 2
        for path in (f"{job}/imports?page_token=x", f"{job}/imports?include_schema=1"):
            assert (await answer(client, name, f"{status_path}/imports", "GET", path))[0] == 400
        for path, template in (
            (base + "/nope", status_path),
            (base + "/nope/errors", status_path + "/errors"),
        ):
            assert (await answer(client, name, template, "GET", path))[0] == 404
        for whole in ({"requests": []}, {}, {"requests": [1]}):
            assert (await answer(client, name, base, "POST", base, whole))[0] == 400
        await control(
            client, "/emulator/faults", {"max_in_progress_jobs": 1, "batch_processing_ms": 60_000}
        )
        statuses = [(await answer(client, name, base, "POST", base, body))[0] for _ in "ab"]
        assert statuses == [200, 429]

    run(scenario, EmulatorConfig(batch_processing_ms=30, batch_page_size=2))


# -- the consumer's requests -----------------------------------------------------------------

SETTINGS = [
    pytest.param(DestinationSettings(), id="defaults"),
    pytest.param(
        DestinationSettings.from_mapping(
            json.loads((ROOT / "schemas/demo-settings.json").read_text())
        )[0],
        id="demo",
    ),
    pytest.param(
        DestinationSettings(
            track_all_pages=True,
            track_named_pages=True,
            track_categorized_pages=True,
            anonymous_identify="uid",
            use_recent_session=True,
            track_groups=True,
        ),
        id="everything-on",
    ),
]
REQUEST_SCHEMAS = {
    ("POST", "/v2/users"): (USERS, "fullstory.v2.users.CreateUserRequest"),
    ("POST", "/v2/events"): (EVENTS, "fullstory.v2.events.CreateEventRequest"),
}
BATCH_SCHEMAS = {
    "users": (USERS, "fullstory.v2.users.CreateBatchUserImportJobRequest"),
    "events": (EVENTS, "fullstory.v2.events.CreateBatchEventsImportJobRequest"),
}


def mapped(settings: DestinationSettings) -> list[Request]:
    """Every request the transform makes for the sample and captured events."""
    out: list[Request] = []
    for sample in SAMPLES:
        for line in sample.read_text().splitlines():
            outcome = transform(json.loads(line), settings)
            if isinstance(outcome, Requests):
                out.extend(outcome.requests)
    return out


@pytest.mark.parametrize("settings", SETTINGS)
def test_the_transform_sends_what_the_spec_declares(settings: DestinationSettings) -> None:
    requests = mapped(settings)
    seen = {(r.method, r.path.partition("?")[0]) for r in requests}
    assert (
        {("POST", "/v2/users"), ("POST", "/v2/events")}
        <= seen
        <= {*REQUEST_SCHEMAS, ("DELETE", "/v2/users")}
    )
    for request in requests:
        if request.method == "DELETE":
            path, _, query = request.path.partition("?")
            assert (path, query.partition("=")[0], request.body) == ("/v2/users", "uid", None)
            assert query.partition("=")[2]
            continue
        name, definition = REQUEST_SCHEMAS[(request.method, request.path)]
        check_definition(name, definition, request.body)


@pytest.mark.parametrize("settings", SETTINGS)
def test_batch_bodies_follow_the_batch_requests(settings: DestinationSettings) -> None:
    """The sink's batch create body is `{"requests": [item bodies of one kind]}`."""
    by_kind: dict[str, list[Any]] = {}
    for request in mapped(settings):
        kind = KINDS.get((request.method, request.path))
        if kind is not None:
            by_kind.setdefault(kind, []).append(request.body)
    assert set(by_kind) == set(BATCH_SCHEMAS)
    for kind, items in by_kind.items():
        name, definition = BATCH_SCHEMAS[kind]
        check_definition(name, definition, {"requests": items})
