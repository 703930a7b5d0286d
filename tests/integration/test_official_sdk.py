"""FullStory's official Node SDK, npm `@fullstory/server-api-client` 1.1.0 (pinned with its lock
file in tests/sdk), against the emulator: every endpoint this project uses, through the SDK's
own request code, batch-job poller and typed errors.

`tests/sdk/scenarios.mjs` runs one scenario per call and prints what the SDK sent and got back
as JSON; the tests here assert on it. The expectations are the real API's, not the emulator's:
FullStory's OpenAPI files (tests/data/fullstory-openapi), its developer docs as summarised in
the reference notes, and the SDK's smoke tests, which FullStory runs against the live API
(`src/__tests__/*.smoke.test.ts` at v1.1.0 of fullstorydev/fullstory-node-sdk). Where those
leave something open (the exact message or code of an answer, fields FullStory may add to an
echoed item), the checks are tolerant.

Skipped only when node or npm is missing and CI is unset; under CI a missing node fails.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from consumer.localenv.emulator import EmulatorProcess

pytestmark = pytest.mark.integration

SDK_DIR = Path(__file__).resolve().parents[1] / "sdk"
SCRIPT = SDK_DIR / "scenarios.mjs"
SDK_PACKAGE = "@fullstory/server-api-client"
SDK_VERSION = "1.1.0"
MIN_NODE = 18
API_KEY = "sdk-test-key"

# Emulator faults set (after a reset) before a scenario runs.
FAULTS: dict[str, dict[str, Any]] = {
    "users_batch_paging": {"batch_page_size": 2},
    "batch_processing": {"batch_processing_ms": 600_000},
    # one request, then one token every 50 s: every later call is answered 429
    "rate_limited": {"rate_limit": 0.02, "burst": 1},
    # one request a second: the SDK's batch job meets 429s and must wait them out
    "batch_rate_limited": {"rate_limit": 1, "burst": 1},
}

# Fields of the spec's answers (BatchUserImportResponse, BatchCreateEventsResponse,
# FailedUserImport, FailedEventsImport, JobMetadata). An echoed item is FullStory's parsed copy:
# it may add `schema`/`type_conflicts` (null) but never fields outside these.
USER_FIELDS = {"uid", "display_name", "email", "properties"}
USER_RESULT_FIELDS = {"id", *USER_FIELDS, "schema", "type_conflicts"}
# CreateEventRequest and BatchCreateEventsResponse have the same field names
EVENT_FIELDS = {"user", "session", "context", "name", "timestamp", "properties", "schema"}
USER_ERROR_FIELDS = {"message", "code", "user"}
EVENT_ERROR_FIELDS = {"message", "code", "event", "shared"}
JOB_FIELDS = {"id", "status", "created", "finished"}


# -- installing the SDK and running scenarios -----------------------------------------------


def _node_and_npm() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    reason = ""
    if node is None or npm is None:
        reason = "node and npm are needed to run FullStory's Node SDK (tests/sdk)"
    else:
        version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=60)
        match = re.match(r"v(\d+)\.", version.stdout.strip())
        if match is None or int(match.group(1)) < MIN_NODE:
            reason = f"node {version.stdout.strip()!r} is older than v{MIN_NODE}"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI is set, so this is a failure, not a skip")
        pytest.skip(reason)
    assert node is not None and npm is not None
    return node, npm


def _installed_version() -> str | None:
    manifest = SDK_DIR / "node_modules" / SDK_PACKAGE / "package.json"
    try:
        version = json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None
    return str(version)


@pytest.fixture(scope="session")
def sdk_node() -> str:
    """node, with the pinned SDK installed in tests/sdk/node_modules by `npm ci` once: a marker
    holding the lock file's digest makes later sessions skip the install, and a file lock keeps
    concurrent sessions from installing at the same time."""
    node, npm = _node_and_npm()
    digest = hashlib.sha256((SDK_DIR / "package-lock.json").read_bytes()).hexdigest()
    marker = SDK_DIR / "node_modules" / ".pytest-npm-ci"
    where = hashlib.sha256(str(SDK_DIR).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"fullstory-sdk-npm-ci-{where}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fresh = marker.is_file() and marker.read_text() == digest
        if not fresh or _installed_version() != SDK_VERSION:
            proc = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                cwd=SDK_DIR,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if proc.returncode != 0:
                pytest.fail(
                    f"npm ci in {SDK_DIR} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
                )
            marker.write_text(digest)
    assert _installed_version() == SDK_VERSION
    return node


class Scenarios:
    """Runs scenarios.mjs against one emulator, each scenario once (results are cached), after
    a reset and that scenario's faults; adds the emulator's request log and users."""

    def __init__(self, node: str, emulator: EmulatorProcess) -> None:
        self.node = node
        self.emulator = emulator
        self.results: dict[str, dict[str, Any]] = {}

    def __getitem__(self, name: str) -> dict[str, Any]:
        if name not in self.results:
            self.results[name] = self._run(name)
        return self.results[name]

    def _run(self, name: str) -> dict[str, Any]:
        emu = self.emulator
        emu.reset()
        if name in FAULTS:
            emu.faults(**FAULTS[name])
        proc = subprocess.run(
            [self.node, str(SCRIPT), emu.url, API_KEY, name],
            cwd=SDK_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "NODE_ENV": "test", "FS_API_HOST": emu.url},
        )
        assert proc.returncode == 0, f"scenario {name} exited {proc.returncode}:\n{proc.stderr}"
        lines = proc.stdout.strip().splitlines()
        assert lines, f"scenario {name} printed nothing:\n{proc.stderr}"
        result: dict[str, Any] = json.loads(lines[-1])
        assert result["scenario"] == name
        assert result["sdk_version"] == SDK_VERSION
        assert result["unhandled"] == [], f"the SDK left errors unhandled: {result['unhandled']}"
        result["log"] = emu.requests(include_rejected=True)
        users = httpx.get(f"{emu.url}/emulator/users", timeout=30.0)
        users.raise_for_status()
        result["users"] = users.json()
        return result


@pytest.fixture(scope="module")
def scenarios(sdk_node: str) -> Iterator[Scenarios]:
    with EmulatorProcess(api_keys=(API_KEY,), org_id="o-SDK-na1") as emu:
        yield Scenarios(sdk_node, emu)


# -- helpers ----------------------------------------------------------------------------------


def ok(outcome: dict[str, Any], status: int = 200) -> Any:
    """The body of an answer the SDK resolved with `status`."""
    assert outcome["ok"], f"the SDK threw {outcome['error']}"
    assert outcome["status"] == status, f"HTTP {outcome['status']}: {outcome['body']}"
    return outcome["body"]


def thrown(outcome: dict[str, Any]) -> dict[str, Any]:
    """What the SDK threw (its description by scenarios.mjs)."""
    assert not outcome["ok"], f"expected an error, got HTTP {outcome['status']}: {outcome['body']}"
    error: dict[str, Any] = outcome["error"]
    return error


def assert_api_error(error: dict[str, Any], status: int, code: str | None = None) -> None:
    """An FSApiError for an answer `status` whose body was FullStory's `{message, code}`."""
    assert error["class"] == "FSApiError" and error["is_api_error"] and error["is_fs_error"], error
    assert error["http_status"] == status, error
    expected = "FS_RATE_LIMITED" if status == 429 else "FS_FULLSTORY_API"
    assert error["name"] == expected, error
    payload = error["payload"]
    assert isinstance(payload, dict) and set(payload) == {"message", "code"}, error
    assert isinstance(payload["message"], str) and payload["message"], error
    assert isinstance(payload["code"], str) and payload["code"], error
    # the SDK copies the body's fields onto the error: nothing beyond message and code came
    assert error["code"] == payload["code"], error
    assert set(error["extra_keys"]) <= {"code", "message"}, error
    assert error["message"].endswith(f"Error message: {payload['message']}"), error
    if code is not None:
        assert payload["code"] == code, error


def finished(trace: dict[str, Any]) -> dict[str, Any]:
    """The `done` of an SDK batch job that neither aborted nor ran out of time."""
    assert not trace["timed_out"], f"the SDK's batch job did not finish: {trace}"
    assert trace["aborted"] is None, f"the SDK's batch job aborted: {trace['aborted']}"
    assert trace["done"] is not None, trace
    done: dict[str, Any] = trace["done"]
    return done


def when(value: Any) -> datetime:
    assert isinstance(value, str), value
    return datetime.fromisoformat(value)


def assert_new_job(job: Any) -> None:
    """JobMetadata of a job just created: id, PROCESSING, created."""
    assert isinstance(job, dict) and set(job) <= JOB_FIELDS, job
    assert isinstance(job["id"], str) and job["id"], job
    assert job["status"] == "PROCESSING", job
    when(job["created"])


def completed_job(steps: dict[str, Any], count: int) -> dict[str, Any]:
    """The `done` of an SDK batch job of `count` items that completed: created
    once, seen PROCESSING with nothing imported, then COMPLETED with every item."""
    trace = steps["job"]
    assert len(trace["created"]) == 1
    job: dict[str, Any] = trace["created"][0]["metadata"]
    assert_new_job(job)
    for seen in trace["processing"]:
        assert seen == {"id": job["id"], "status": "PROCESSING", "imports": 0, "failed": 0}
    done = finished(trace)
    assert done["status"] == "COMPLETED" and trace["errors"] == []
    assert (len(done["imported"]), done["failed"]) == (count, [])
    assert_job_status(ok(steps["status"]), job["id"], "COMPLETED", imports=count, errors=0)
    return done


def assert_job_status(body: Any, job_id: str, status: str, imports: int, errors: int) -> None:
    """GET .../batch/{id}: {imports, errors, job} of a finished job."""
    assert isinstance(body, dict) and set(body) <= {"imports", "errors", "job"}, body
    assert body["imports"] == imports, body
    assert body.get("errors", 0) == errors, body
    job = body["job"]
    assert set(job) <= JOB_FIELDS, body
    assert (job["id"], job["status"]) == (job_id, status), body
    assert when(job["finished"]) >= when(job["created"]), body


def contains(actual: Any, expected: dict[str, Any]) -> bool:
    """Jest's objectContaining: every expected field present with an equal value."""
    return isinstance(actual, dict) and all(
        name in actual and actual[name] == value for name, value in expected.items()
    )


def by_name(results: list[Any], name: str) -> dict[str, Any]:
    found = [r for r in results if isinstance(r, dict) and r.get("name") == name]
    assert len(found) == 1, f"expected one result named {name!r} in {results}"
    result: dict[str, Any] = found[0]
    return result


def log_entries(result: dict[str, Any], method: str, path: str) -> list[dict[str, Any]]:
    return [r for r in result["log"] if r["method"] == method and r["path"] == path]


def assert_user_error_item(item: Any, sent: list[dict[str, Any]]) -> dict[str, Any]:
    """A FailedUserImport: message, code and the user as FullStory parsed it (no index); the
    echo matches a sent item by uid, and its other fields equal the sent ones where present."""
    assert isinstance(item, dict), item
    assert "index" not in item, f"FullStory's error items carry no index: {item}"
    assert set(item) <= USER_ERROR_FIELDS, item
    assert isinstance(item.get("message"), str) and item["message"], item
    assert isinstance(item.get("code"), str) and item["code"], item
    user = item.get("user")
    assert isinstance(user, dict) and set(user) <= USER_RESULT_FIELDS, item
    matches = [s for s in sent if s.get("uid") == user.get("uid")]
    assert len(matches) == 1, f"no sent user matches the echo {user}"
    match = matches[0]
    for name, value in match.items():
        if name in user:
            assert user[name] == value, (name, user, match)
    return match


def assert_event_error_item(item: Any, sent: list[dict[str, Any]]) -> dict[str, Any]:
    """A FailedEventsImport: message, code and the event as FullStory parsed it (no index)."""
    assert isinstance(item, dict), item
    assert "index" not in item, f"FullStory's error items carry no index: {item}"
    assert set(item) <= EVENT_ERROR_FIELDS, item
    assert isinstance(item.get("message"), str) and item["message"], item
    assert isinstance(item.get("code"), str) and item["code"], item
    event = item.get("event")
    assert isinstance(event, dict) and set(event) <= EVENT_FIELDS, item
    matches = [s for s in sent if s.get("name") == event.get("name")]
    assert len(matches) == 1, f"no sent event matches the echo {event}"
    return matches[0]


# -- POST /v2/users, DELETE /v2/users?uid= ---------------------------------------------------


def test_create_user_answers_its_id_and_upserts_by_uid(scenarios: Scenarios) -> None:
    result = scenarios["users_single"]
    steps, sent = result["steps"], result["sent"]
    created = ok(steps["create_full"])
    assert set(created) == {"id"} and isinstance(created["id"], str) and created["id"]
    # the same uid is the same user; without a uid each call is a new user
    assert ok(steps["create_same_uid"]) == created
    anonymous = {ok(steps[f"create_anonymous_{n}"])["id"] for n in (1, 2)}
    assert len(anonymous | {created["id"]}) == 3
    # a replayed Idempotency-Key answers the first result
    first = ok(steps["create_idempotent_1"])
    assert ok(steps["create_idempotent_2"]) == first
    # "Basic <key>" as the smoke tests pass it works like the bare key
    assert ok(steps["create_prefixed_key"])["id"]
    posts = log_entries(result, "POST", "/v2/users")
    assert posts[0]["body"] == sent["full"] and posts[0]["status"] == 200
    keyed = [r for r in posts if r["idempotency_key"] == "sdk-idem-user-1"]
    assert [r["replay"] for r in keyed] == [False, True]


def test_delete_user_by_uid(scenarios: Scenarios) -> None:
    result = scenarios["users_single"]
    steps, special = result["steps"], result["sent"]["special_uid"]
    assert ok(steps["delete_special"]) == {}
    deletes = log_entries(result, "DELETE", "/v2/users")
    assert [(r["query"], r["status"]) for r in deletes] == [({"uid": special}, 200)]
    uids = {user.get("uid") for user in result["users"]}
    assert special not in uids and result["sent"]["full"]["uid"] in uids
    # delete without id or uid is refused by the SDK itself, no request is made
    error = thrown(steps["delete_without_uid"])
    assert (error["name"], error["http_status"]) == ("FS_ERROR_INVALID_ARGUMENT", None)


# -- POST /v2/events ---------------------------------------------------------------------------


def test_create_event_answers_an_empty_object(scenarios: Scenarios) -> None:
    result = scenarios["events_single"]
    steps, bodies = result["steps"], result["sent"]["bodies"]
    for name in [*bodies, "idempotent_1", "idempotent_2"]:
        assert ok(steps[name]) == {}, name
    stored = [r for r in log_entries(result, "POST", "/v2/events") if not r["replay"]]
    assert [r["body"] for r in stored][: len(bodies)] == list(bodies.values())
    keyed = [r for r in log_entries(result, "POST", "/v2/events") if r["idempotency_key"]]
    assert [r["replay"] for r in keyed] == [False, True]


# -- batch users: POST /v2/users/batch, GET .../{id}, .../imports, .../errors -----------------


def test_users_batch_job_lifecycle(scenarios: Scenarios) -> None:
    result = scenarios["users_batch"]
    steps = result["steps"]
    done = completed_job(steps, 3)
    imports = ok(steps["imports"])
    assert imports["total_records"] == "3" and not imports.get("next_page_token")
    assert imports["results"] == done["imported"]
    creates = log_entries(result, "POST", "/v2/users/batch")
    assert [r["body"] for r in creates] == [{"requests": result["sent"]["requests"]}]


def test_users_batch_imports_echo_the_users(scenarios: Scenarios) -> None:
    """BatchUserImportResponse: the FullStory id and the user's fields as imported; the smoke
    test expects each import to contain its whole request (properties included)."""
    result = scenarios["users_batch"]
    steps, sent = result["steps"], result["sent"]["requests"]
    imported = finished(steps["job"])["imported"]
    for item in imported:
        assert set(item) <= USER_RESULT_FIELDS, item
        assert isinstance(item["id"], str) and item["id"], item
    assert len({item["id"] for item in imported}) == len(imported)
    for request in sent:
        assert sum(contains(item, request) for item in imported) == 1, (request, imported)
    # the imported user is the user of that uid
    first = next(item for item in imported if item.get("uid") == sent[0]["uid"])
    assert ok(steps["create_same_uid"]) == {"id": first["id"]}


def test_users_batch_item_names_the_user_by_id(scenarios: Scenarios) -> None:
    """BatchUserImportRequest has `id` (the FullStory id): it updates that user."""
    result = scenarios["users_batch_by_id"]
    steps, (item,) = result["steps"], result["sent"]["requests"]
    user_id = ok(steps["create_user"])["id"]
    done = finished(steps["job"])
    assert done["failed"] == [], done["failed"]
    assert done["status"] == "COMPLETED"
    (imported,) = done["imported"]
    assert imported["id"] == user_id
    assert contains(imported, {k: v for k, v in item.items() if k != "id"}), imported


def test_users_batch_results_page_with_page_token(scenarios: Scenarios) -> None:
    """With pages of 2 (emulator fault), 5 results come as 2 + 2 + 1, each page naming the total
    as a string and the token of the next one, the last naming none."""
    result = scenarios["users_batch_paging"]
    steps, sent = result["steps"], result["sent"]
    for create, status, pages, items in (
        ("create_good", "status_good", "import_pages", sent["good"]),
        ("create_bad", "status_bad", "error_pages", sent["bad"]),
    ):
        job = ok(steps[create])["job"]
        assert_new_job(job)
        polled = steps[status]
        assert not polled["timed_out"], polled
        good = pages == "import_pages"
        assert_job_status(
            ok(polled),
            job["id"],
            "COMPLETED" if good else "FAILED",
            imports=5 if good else 0,
            errors=0 if good else 5,
        )
        answers = steps[pages]
        bodies = [ok(page) for page in answers]
        assert [len(body["results"]) for body in bodies] == [2, 2, 1], bodies
        assert {body["total_records"] for body in bodies} == {"5"}
        tokens = [body.get("next_page_token") for body in bodies]
        assert all(isinstance(t, str) and t for t in tokens[:2]) and not tokens[2], tokens
        assert [page["page_token"] for page in answers] == [None, *tokens[:2]]
        if good:
            uids = [r["uid"] for body in bodies for r in body["results"]]
        else:
            uids = [r["user"]["uid"] for body in bodies for r in body["results"]]
        assert sorted(uids) == sorted(item["uid"] for item in items)
    # the SDK's job follows the tokens itself: three requests, the first without a token
    done = finished(steps["sdk_job"])
    assert done["status"] == "COMPLETED"
    assert sorted(r["uid"] for r in done["imported"]) == [i["uid"] for i in sent["sdk_items"]]
    job_id = steps["sdk_job"]["final"]["id"]
    fetched = log_entries(result, "GET", f"/v2/users/batch/{job_id}/imports")
    tokens = [r["query"].get("page_token") for r in fetched]
    assert len(tokens) == 3 and tokens[0] is None and len(set(tokens[1:])) == 2, tokens


def test_users_batch_with_failed_items(scenarios: Scenarios) -> None:
    """A job with any failed item is FAILED (partial failure included): the good items are
    imported, the bad one is in .../errors. The SDK's `done` of a FAILED job fetches only the
    errors, so its imported list is empty."""
    result = scenarios["users_batch_errors"]
    steps, sent = result["steps"], result["sent"]["requests"]
    done = finished(steps["job"])
    job_id = steps["job"]["final"]["id"]
    assert done["status"] == "FAILED"
    assert done["imported"] == []
    assert [item.get("user", {}).get("uid") for item in done["failed"]] == [sent[1]["uid"]]
    assert_job_status(ok(steps["status"]), job_id, "FAILED", imports=2, errors=1)
    imports = ok(steps["imports"])
    assert imports["total_records"] == "2"
    for request in (sent[0], sent[2]):
        assert sum(contains(item, request) for item in imports["results"]) == 1, imports
    errors = ok(steps["errors"])
    assert errors["total_records"] == "1" and len(errors["results"]) == 1
    assert errors["results"] == done["failed"]


def test_users_batch_error_items_have_message_code_user_and_no_index(
    scenarios: Scenarios,
) -> None:
    """FailedUserImport is {message, code, user}: no position index."""
    errors = scenarios["users_batch_errors"]
    items = [*finished(errors["steps"]["job"])["failed"], *ok(errors["steps"]["errors"])["results"]]
    for item in items:
        assert_user_error_item(item, errors["sent"]["requests"])
    paging = scenarios["users_batch_paging"]
    for page in paging["steps"]["error_pages"]:
        for item in ok(page)["results"]:
            assert_user_error_item(item, paging["sent"]["bad"])


# -- batch events: POST /v2/events/batch, GET .../{id}, .../imports, .../errors ---------------


def test_events_batch_job_lifecycle(scenarios: Scenarios) -> None:
    result = scenarios["events_batch"]
    steps, sent = result["steps"], result["sent"]
    done = completed_job(steps, 4)
    imports = ok(steps["imports"])
    assert imports["total_records"] == "4" and imports["results"] == done["imported"]
    creates = log_entries(result, "POST", "/v2/events/batch")
    assert [r["body"] for r in creates] == [
        {"requests": sent["requests"], "shared": sent["shared"]}
    ]


def test_events_batch_imports_carry_user_and_session_ids(scenarios: Scenarios) -> None:
    """BatchCreateEventsResponse: name, properties as sent (smoke test), `user` as {id, uid}
    and `session` as {id} (SessionIdResponse has no use_most_recent), not the request's echo."""
    result = scenarios["events_batch"]
    steps, sent = result["steps"], result["sent"]
    user_id = ok(steps["create_user"])["id"]
    imported = finished(steps["job"])["imported"]
    for request in sent["requests"]:
        item = by_name(imported, request["name"])
        assert set(item) <= EVENT_FIELDS, item
        if "properties" in request:
            assert item["properties"] == request["properties"], item
        if "timestamp" in request and "timestamp" in item:
            assert when(item["timestamp"]) == when(request["timestamp"]), item
        if "context" in item:
            assert item["context"] == sent["shared"]["context"], item
        if "user" in item:
            user = item["user"]
            assert isinstance(user, dict) and set(user) <= {"id", "uid"}, item
            assert isinstance(user.get("id"), str) and user["id"], item
        if "session" in item:
            session = item["session"]
            assert isinstance(session, dict) and set(session) <= {"id"}, item
            assert isinstance(session.get("id"), str) and session["id"], item
    by_uid = by_name(imported, "SDK Batch Event by uid")
    assert by_uid.get("user") == {"id": user_id, "uid": sent["uid"]}, by_uid
    by_id = by_name(imported, "SDK Batch Event by id")
    assert by_id.get("user", {}).get("id") == user_id, by_id
    assert by_id["user"].get("uid", sent["uid"]) == sent["uid"], by_id


def test_events_batch_error_items_have_message_code_event_and_no_index(
    scenarios: Scenarios,
) -> None:
    """FailedEventsImport is {message, code, event, shared?}: no position index."""
    result = scenarios["events_batch_errors"]
    steps, sent = result["steps"], result["sent"]["requests"]
    failed = finished(steps["job"])["failed"]
    assert failed, "no failed items"
    for item in [*failed, *ok(steps["errors"])["results"]]:
        assert_event_error_item(item, sent)


def test_events_batch_item_with_its_own_context_fails_under_shared_context(
    scenarios: Scenarios,
) -> None:
    """SharedData: "If any of the events in the requests field also contain a context, the
    event will fail to be imported"; an empty name fails as it does on POST /v2/events."""
    result = scenarios["events_batch_errors"]
    steps = result["steps"]
    done = finished(steps["job"])
    assert done["status"] == "FAILED" and done["imported"] == []
    failed_names = {item.get("event", {}).get("name") for item in done["failed"]}
    assert {"SDK Batch own context", ""} <= failed_names, done["failed"]
    imported_names = {item.get("name") for item in ok(steps["imports"])["results"]}
    assert "SDK Batch OK" in imported_names
    assert not imported_names & {"SDK Batch own context", ""}, imported_names
    status = ok(steps["status"])
    assert status["job"]["status"] == "FAILED" and status["errors"] >= 2


def test_events_batch_item_uid_over_256_characters_fails(scenarios: Scenarios) -> None:
    """UserIdRequest.uid has maxLength 256."""
    result = scenarios["events_batch_errors"]
    steps = result["steps"]
    failed_names = {item.get("event", {}).get("name") for item in ok(steps["errors"])["results"]}
    assert "SDK Batch long uid" in failed_names
    imports = ok(steps["imports"])
    assert [item.get("name") for item in imports["results"]] == ["SDK Batch OK"], imports
    assert_job_status(
        ok(steps["status"]), steps["job"]["final"]["id"], "FAILED", imports=1, errors=3
    )


def test_imports_include_the_schema_when_asked(scenarios: Scenarios) -> None:
    """`include_schema=true` on .../imports: each result carries `schema` (an earlier version of
    the SDK's users smoke test expected `im.schema` to be defined, against the live API)."""
    for name in ("users_batch", "events_batch"):
        results = ok(scenarios[name]["steps"]["imports_with_schema"])["results"]
        assert results and all("schema" in item for item in results), (name, results)


# -- jobs still processing ----------------------------------------------------------------------


def test_batch_results_answer_202_while_the_job_is_processing(scenarios: Scenarios) -> None:
    result = scenarios["batch_processing"]
    steps = result["steps"]
    for kind in ("users", "events"):
        job = ok(steps[f"{kind}_create"])["job"]
        assert_new_job(job)
        status = ok(steps[f"{kind}_status"])
        assert status["job"]["status"] == "PROCESSING" and "finished" not in status["job"]
        assert (status["imports"], status.get("errors", 0)) == (0, 0)
        assert ok(steps[f"{kind}_imports"], 202) == {}
        assert ok(steps[f"{kind}_errors"], 202) == {}
    # the SDK's job reports each poll while PROCESSING (smoke test), with nothing imported yet
    trace = steps["sdk_job"]
    assert trace["aborted"] is None and trace["done"] is None and trace["errors"] == []
    job_id = trace["created"][0]["id"]
    assert trace["processing"] == [
        {"id": job_id, "status": "PROCESSING", "imports": 0, "failed": 0}
    ] * len(trace["processing"])
    assert len(trace["processing"]) == 2
    # an unknown job is a 404 with FullStory's error body
    assert_api_error(thrown(steps["unknown_job"]), 404)


# -- errors: 400, 401, 429 ------------------------------------------------------------------------


def test_400_is_an_fs_api_error_with_message_and_code(scenarios: Scenarios) -> None:
    steps = scenarios["errors"]["steps"]
    # the events smoke test: "Event with no name should reject with error"
    error = thrown(steps["empty_event_name"])
    assert_api_error(error, 400, "invalid_argument")
    assert "events must have a non-empty name" in error["payload"]["message"]
    assert (error["can_retry"], error["retry_after_ms"]) == (False, 0)
    # CreateUserRequest.uid has maxLength 256
    assert_api_error(thrown(steps["user_uid_too_long"]), 400)


def test_event_user_uid_over_256_characters_is_refused(scenarios: Scenarios) -> None:
    """UserIdRequest.uid has maxLength 256."""
    assert_api_error(thrown(scenarios["errors"]["steps"]["event_uid_too_long"]), 400)


def test_more_than_500_user_properties_are_refused(scenarios: Scenarios) -> None:
    """CreateUserRequest.properties has maxProperties 500."""
    result = scenarios["errors"]
    assert_api_error(thrown(result["steps"]["too_many_user_properties"]), 400)
    assert "sdk_many_props" not in {user.get("uid") for user in result["users"]}


def test_401_is_an_fs_api_error_and_aborts_a_batch_job(scenarios: Scenarios) -> None:
    result = scenarios["errors"]
    steps = result["steps"]
    for name in ("wrong_key_user", "wrong_key_event", "wrong_key_delete"):
        error = thrown(steps[name])
        assert_api_error(error, 401, "unauthorized")
        assert error["can_retry"] is False, name
    trace = steps["wrong_key_job"]
    assert trace["created"] == [] and trace["done"] is None and not trace["timed_out"]
    assert trace["aborted"] is not None and len(trace["aborted"]) == 1
    assert trace["errors"] == trace["aborted"]
    assert_api_error(trace["aborted"][0], 401, "unauthorized")
    refused = [r for r in result["log"] if r["status"] == 401]
    assert len(refused) == 4 and "sdk_401" not in {u.get("uid") for u in result["users"]}


def test_429_is_a_rate_limited_error_with_retry_after(scenarios: Scenarios) -> None:
    steps = scenarios["rate_limited"]["steps"]
    assert ok(steps["first"])["id"]
    for name in ("user_limited", "event_limited"):
        error = thrown(steps[name])
        assert_api_error(error, 429, "too_many_requests")
        assert error["can_retry"] is True
        header = error["retry_after_header"]
        assert isinstance(header, str) and header.isdigit() and int(header) >= 1, error
        assert error["retry_after_ms"] == int(header) * 1000


def test_batch_job_waits_out_429s(scenarios: Scenarios) -> None:
    """At one request a second the SDK's job meets 429s (creating the job, fetching results)
    and retries after Retry-After until it is done."""
    result = scenarios["batch_rate_limited"]
    steps, sent = result["steps"], result["sent"]["requests"]
    assert ok(steps["first"])["id"]
    trace = steps["job"]
    done = finished(trace)
    assert done["status"] == "COMPLETED" and done["failed"] == []
    assert sorted(item["uid"] for item in done["imported"]) == [r["uid"] for r in sent]
    assert trace["errors"], "the job met no 429"
    for error in trace["errors"]:
        assert_api_error(error, 429, "too_many_requests")
    assert len(trace["created"]) == 1
    accepted = [r for r in log_entries(result, "POST", "/v2/users/batch") if r["status"] == 200]
    assert len(accepted) == 1
    assert any(r["status"] == 429 for r in result["log"])
