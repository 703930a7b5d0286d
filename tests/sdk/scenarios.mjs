// Runs FullStory's official Node SDK (@fullstory/server-api-client, pinned in package.json)
// against a FullStory API emulator, one scenario per run, and prints one JSON document on stdout:
//   {"scenario": name, "sent": {...what was sent...}, "steps": {step: outcome, ...}}
// where an outcome is {"ok": true, "status", "headers", "body"} for an answer the SDK resolved,
// {"ok": false, "error": {...}} for an error it threw, or a batch-job trace (see runJob).
//
// Usage: node scenarios.mjs <base-url> <api-key> <scenario>
//    or: FS_EMULATOR_URL=... FS_EMULATOR_API_KEY=... node scenarios.mjs <scenario>
// `node scenarios.mjs --list` prints the scenario names.
//
// The SDK reads its host from FS_API_HOST when NODE_ENV is "test" or "development" (in its API
// classes' constructors); this script sets both before loading it. Faults (page size, processing
// time, rate limits) are set on the emulator by the caller before the run.

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

const args = process.argv.slice(2);
let baseUrl = process.env.FS_EMULATOR_URL;
let apiKey = process.env.FS_EMULATOR_API_KEY;
let scenarioName;
if (args.length >= 3) {
    [baseUrl, apiKey, scenarioName] = args;
} else {
    [scenarioName] = args;
}

process.env.NODE_ENV = 'test';
process.env.FS_API_HOST = baseUrl || '';

const sdk = require('@fullstory/server-api-client');
// The typed errors are not re-exported from the package root; they live in lib/errors.
const sdkErrors = require('@fullstory/server-api-client/lib/errors');
const sdkVersion = require('@fullstory/server-api-client/package.json').version;

const { init, UsersBatchImportApi, EventsBatchImportApi, JobStatus } = sdk;
const { FSApiError, isFSError } = sdkErrors;

// Anything the SDK leaves unhandled (its batch job fetches results from a timer callback and
// does not catch there) is reported instead of crashing the run.
const unhandled = [];
process.on('unhandledRejection', (err) => unhandled.push(describeError(err)));

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const ERROR_OWN_KEYS = new Set([
    'discriminator',
    'name',
    'cause',
    'httpStatusCode',
    'headers',
    'fsErrorPayload',
    'stack',
]);

function describeError(err) {
    const isObject = err !== null && typeof err === 'object';
    return {
        class: isObject ? err.constructor?.name ?? null : null,
        name: isObject ? err.name ?? null : null,
        message: isObject ? err.message ?? null : String(err),
        is_fs_error: isObject && isFSError(err),
        is_api_error: err instanceof FSApiError,
        http_status: isObject ? err.httpStatusCode ?? null : null,
        payload: isObject ? err.fsErrorPayload ?? null : null,
        code: isObject ? err.code ?? null : null,
        can_retry: isObject && typeof err.canRetry === 'function' ? err.canRetry() : null,
        retry_after_ms:
            isObject && typeof err.getRetryAfter === 'function' ? err.getRetryAfter() : null,
        retry_after_header: isObject ? err.headers?.['retry-after'] ?? null : null,
        // fields of the answer's JSON body that the SDK copied onto the error (beside its own)
        extra_keys: isObject ? Object.keys(err).filter((k) => !ERROR_OWN_KEYS.has(k)) : [],
    };
}

// One SDK call: its resolved answer, or the error it threw.
async function step(call) {
    try {
        const rsp = await call();
        return {
            ok: true,
            status: rsp.httpStatusCode,
            headers: rsp.httpHeaders ?? {},
            body: rsp.body === undefined ? null : rsp.body,
        };
    } catch (err) {
        return { ok: false, error: describeError(err) };
    }
}

// Execute an SDK batch job and collect what its listeners saw, until `done` or `abort` (or
// `stopAfterProcessing` processing callbacks, or the time limit).
function runJob(job, { timeoutMs = 90000, stopAfterProcessing = 0 } = {}) {
    return new Promise((resolve) => {
        const trace = {
            created: [],
            processing: [],
            errors: [],
            aborted: null,
            done: null,
            timed_out: false,
        };
        let finished = false;
        const finish = () => {
            if (finished) return;
            finished = true;
            clearTimeout(timer);
            job.stopPolling();
            trace.final = { id: job.getId() ?? null, metadata: job.metadata ?? null };
            resolve(trace);
        };
        const timer = setTimeout(() => {
            trace.timed_out = true;
            finish();
        }, timeoutMs);
        job.on('created', (j) => trace.created.push({ id: j.getId(), metadata: { ...j.metadata } }))
            .on('processing', (j) => {
                trace.processing.push({
                    id: j.getId(),
                    status: j.metadata?.status ?? null,
                    imports: j.getImports().length,
                    failed: j.getFailedImports().length,
                });
                if (stopAfterProcessing && trace.processing.length >= stopAfterProcessing) finish();
            })
            .on('error', (err) => trace.errors.push(describeError(err)))
            .on('abort', (errs) => {
                trace.aborted = (errs || []).map(describeError);
                finish();
            })
            .on('done', (imported, failed) => {
                trace.done = {
                    status: job.metadata?.status ?? null,
                    metadata: job.metadata ?? null,
                    imported,
                    failed,
                };
                finish();
            });
        job.execute();
    });
}

// Poll a job's status with the low-level API until it is no longer PROCESSING (bounded).
async function waitForJob(getStatus, { intervalMs = 150, timeoutMs = 60000 } = {}) {
    const deadline = Date.now() + timeoutMs;
    let polls = 0;
    let last = null;
    while (Date.now() < deadline) {
        last = await step(getStatus);
        polls += 1;
        if (!last.ok || last.body?.job?.status !== JobStatus.Processing) {
            return { ...last, polls, timed_out: false };
        }
        await sleep(intervalMs);
    }
    return { ...last, polls, timed_out: true };
}

// Follow next_page_token by hand (bounded; stops on a token seen before).
async function allPages(getPage, maxPages = 50) {
    const pages = [];
    const seen = new Set();
    let token;
    for (let i = 0; i < maxPages; i += 1) {
        const page = await step(() => getPage(token));
        pages.push({ page_token: token ?? null, ...page });
        const next = page.ok ? page.body?.next_page_token : undefined;
        if (!next || seen.has(next)) break;
        seen.add(next);
        token = next;
    }
    return pages;
}

const client = () => init({ apiKey, integrationSource: 'segment-fullstory-consumer SDK tests' });
// The low-level generated API classes take the Authorization value as is (init adds "Basic ").
const lowLevelOpts = () => ({ apiKey: `Basic ${apiKey}` });
const usersBatchApi = () => new UsersBatchImportApi(lowLevelOpts());
const eventsBatchApi = () => new EventsBatchImportApi(lowLevelOpts());

const NESTED_PROPERTIES = {
    membership_tier: 'gold',
    sign_up: {
        signed_up: true,
        signed_up_date: '2000-10-31T00:00:00Z',
    },
    cell_number: '4041111111',
};

const scenarios = {
    // POST /v2/users and DELETE /v2/users?uid=
    async users_single() {
        const { users } = client();
        const full = {
            uid: 'sdk_user_full',
            display_name: 'SDK Test User',
            email: 'sdk.user@example.com',
            properties: NESTED_PROPERTIES,
        };
        const special = 'sdk user/ä&x=1?#%';
        const sent = { full, special_uid: special };
        const steps = {};
        steps.create_full = await step(() => users.create({ body: full }));
        steps.create_same_uid = await step(() =>
            users.create({ body: { uid: full.uid, display_name: 'SDK Test User, renamed' } }),
        );
        steps.create_anonymous_1 = await step(() => users.create({ body: { display_name: 'Anon' } }));
        steps.create_anonymous_2 = await step(() => users.create({ body: { display_name: 'Anon' } }));
        const idem = { body: { display_name: 'Idempotent' }, idempotencyKey: 'sdk-idem-user-1' };
        steps.create_idempotent_1 = await step(() => users.create(idem));
        steps.create_idempotent_2 = await step(() => users.create(idem));
        // The smoke tests pass the key with its scheme: init keeps a value containing a space.
        const prefixed = init({ apiKey: `Basic ${apiKey}` });
        steps.create_prefixed_key = await step(() =>
            prefixed.users.create({ body: { uid: 'sdk_user_prefixed' } }),
        );
        steps.create_special = await step(() => users.create({ body: { uid: special } }));
        steps.delete_special = await step(() => users.delete({ uid: special }));
        steps.delete_without_uid = await step(() => users.delete({}));
        return { sent, steps };
    },

    // POST /v2/events
    async events_single() {
        const { users, events } = client();
        const uid = 'sdk_event_user';
        const steps = {};
        steps.create_user = await step(() => users.create({ body: { uid } }));
        const userId = steps.create_user.body?.id;
        const bodies = {
            with_uid: {
                user: { uid },
                name: 'SDK Event - with user.uid',
                timestamp: '2026-11-28T10:00:00.000Z',
                properties: NESTED_PROPERTIES,
            },
            with_id: { user: { id: userId }, name: 'SDK Event - with user.id' },
            anonymous: { name: 'SDK Event - anonymous', properties: { prop_2: 'two' } },
            use_most_recent: {
                user: { uid },
                session: { use_most_recent: true },
                context: {
                    browser: { url: 'https://www.example.com/cart', user_agent: 'SDK test' },
                    location: { country: 'US', latitude: 33.748997, longitude: -84.387985 },
                },
                name: 'Order Completed',
                timestamp: '2026-11-28T10:00:01Z',
                properties: { count: 3, revenue: 12.5 },
                schema: { properties: { count: 'int' } },
            },
            session_id: { session: { id: '123456789:123456789' }, name: 'SDK Event - session' },
        };
        for (const [name, body] of Object.entries(bodies)) {
            steps[name] = await step(() => events.create({ body }));
        }
        const idem = { body: { name: 'SDK Event - idempotent' }, idempotencyKey: 'sdk-idem-ev-1' };
        steps.idempotent_1 = await step(() => events.create(idem));
        steps.idempotent_2 = await step(() => events.create(idem));
        return { sent: { uid, bodies }, steps };
    },

    // POST /v2/users/batch, GET .../{id}, GET .../imports through the SDK's batch job
    async users_batch() {
        const { users } = client();
        const first = {
            uid: 'sdk_batch_user_1',
            display_name: 'SDK Batch User 1',
            email: 'batch1@example.com',
            properties: NESTED_PROPERTIES,
        };
        const second = { display_name: 'SDK Batch User 2' };
        const third = { uid: 'sdk_batch_user_3', display_name: 'SDK Batch User 3' };
        const job = users
            .batchCreate({ body: { requests: [first] } }, { pollInterval: 250 })
            .add(second, third);
        const steps = {};
        steps.job = await runJob(job);
        const jobId = steps.job.final.id;
        const api = usersBatchApi();
        steps.status = await step(() => api.getBatchUserImportStatus({ jobId }));
        steps.imports = await step(() => api.getBatchUserImports({ jobId }));
        steps.errors = await step(() => api.getBatchUserImportErrors({ jobId }));
        steps.imports_with_schema = await step(() =>
            api.getBatchUserImports({ jobId, includeSchema: true }),
        );
        // the imported user is the user of that uid
        steps.create_same_uid = await step(() => users.create({ body: { uid: first.uid } }));
        return { sent: { requests: [first, second, third] }, steps };
    },

    // A batch user item may name the user by its FullStory id (BatchUserImportRequest.id)
    async users_batch_by_id() {
        const { users } = client();
        const steps = {};
        steps.create_user = await step(() => users.create({ body: { display_name: 'By id' } }));
        const item = {
            id: steps.create_user.body?.id,
            display_name: 'Renamed by id',
            properties: { tier: 'gold' },
        };
        const job = users.batchCreate({ body: { requests: [item] } }, { pollInterval: 250 });
        steps.job = await runJob(job);
        return { sent: { requests: [item] }, steps };
    },

    // Paging of .../imports and .../errors (the caller sets batch_page_size to 2)
    async users_batch_paging() {
        const { users } = client();
        const api = usersBatchApi();
        const good = [0, 1, 2, 3, 4].map((i) => ({ uid: `sdk_page_user_${i}`, properties: { i } }));
        const bad = [0, 1, 2, 3, 4].map((i) => ({ uid: `bad_${i}_`.padEnd(300, 'x') }));
        const steps = {};
        steps.create_good = await step(() =>
            api.createBatchUserImportJob({ body: { requests: good } }),
        );
        const goodId = steps.create_good.body?.job?.id;
        steps.status_good = await waitForJob(() => api.getBatchUserImportStatus({ jobId: goodId }));
        steps.import_pages = await allPages((pageToken) =>
            api.getBatchUserImports({ jobId: goodId, pageToken }),
        );
        steps.create_bad = await step(() => api.createBatchUserImportJob({ body: { requests: bad } }));
        const badId = steps.create_bad.body?.job?.id;
        steps.status_bad = await waitForJob(() => api.getBatchUserImportStatus({ jobId: badId }));
        steps.error_pages = await allPages((pageToken) =>
            api.getBatchUserImportErrors({ jobId: badId, pageToken }),
        );
        // the SDK's own paging over the same page size
        const sdkItems = [0, 1, 2, 3, 4].map((i) => ({ uid: `sdk_page_job_${i}` }));
        const job = users.batchCreate({ body: { requests: sdkItems } }, { pollInterval: 250 });
        steps.sdk_job = await runJob(job);
        return { sent: { good, bad, sdk_items: sdkItems }, steps };
    },

    // Item failures: GET .../errors
    async users_batch_errors() {
        const { users } = client();
        const api = usersBatchApi();
        const requests = [
            { uid: 'sdk_err_user_ok_1', display_name: 'OK 1' },
            { uid: 'sdk_err_user_long_'.padEnd(300, 'x'), display_name: 'uid too long' },
            { uid: 'sdk_err_user_ok_2', email: 'ok2@example.com' },
        ];
        const job = users.batchCreate({ body: { requests } }, { pollInterval: 250 });
        const steps = {};
        steps.job = await runJob(job);
        const jobId = steps.job.final.id;
        steps.status = await step(() => api.getBatchUserImportStatus({ jobId }));
        steps.imports = await step(() => api.getBatchUserImports({ jobId }));
        steps.errors = await step(() => api.getBatchUserImportErrors({ jobId }));
        return { sent: { requests }, steps };
    },

    // POST /v2/events/batch with shared context, through the SDK's batch job
    async events_batch() {
        const { users, events } = client();
        const uid = 'sdk_batch_event_user';
        const steps = {};
        steps.create_user = await step(() => users.create({ body: { uid } }));
        const userId = steps.create_user.body?.id;
        const shared = { context: { browser: { url: 'https://www.example.com/shop' } } };
        const first = {
            name: 'SDK Batch Event 1',
            timestamp: '2026-11-28T10:00:00Z',
            properties: {
                membership_tier: 'gold',
                sign_up: { signed_up: true, some_other_str: 'some other strings...' },
                cell_num: '4041111111',
            },
        };
        const second = { name: 'SDK Batch Event 2' };
        const byUid = {
            user: { uid },
            session: { use_most_recent: true },
            name: 'SDK Batch Event by uid',
            timestamp: '2026-11-28T10:00:02.500Z',
            properties: { order_id: 'o-1', revenue: 19.99 },
        };
        const byId = { user: { id: userId }, name: 'SDK Batch Event by id' };
        const job = events
            .batchCreate({ body: { requests: [first, second], shared } }, { pollInterval: 250 })
            .add(byUid, byId);
        steps.job = await runJob(job);
        const jobId = steps.job.final.id;
        const api = eventsBatchApi();
        steps.status = await step(() => api.getBatchEventsImportStatus({ jobId }));
        steps.imports = await step(() => api.getBatchEventsImports({ jobId }));
        steps.imports_with_schema = await step(() =>
            api.getBatchEventsImports({ jobId, includeSchema: true }),
        );
        return { sent: { uid, shared, requests: [first, second, byUid, byId] }, steps };
    },

    // Event item failures: own context with shared.context (documented), empty name, long uid
    async events_batch_errors() {
        const { events } = client();
        const api = eventsBatchApi();
        const shared = { context: { browser: { url: 'https://www.example.com/shared' } } };
        const requests = [
            { name: 'SDK Batch OK', properties: { n: 1 } },
            { name: 'SDK Batch own context', context: { browser: { url: 'https://own.example' } } },
            { name: '', properties: { n: 3 } },
            { name: 'SDK Batch long uid', user: { uid: 'u'.repeat(300) } },
        ];
        const job = events.batchCreate({ body: { requests, shared } }, { pollInterval: 250 });
        const steps = {};
        steps.job = await runJob(job);
        const jobId = steps.job.final.id;
        steps.status = await step(() => api.getBatchEventsImportStatus({ jobId }));
        steps.imports = await step(() => api.getBatchEventsImports({ jobId }));
        steps.errors = await step(() => api.getBatchEventsImportErrors({ jobId }));
        return { sent: { shared, requests }, steps };
    },

    // Jobs still PROCESSING (the caller sets a long batch_processing_ms): 202 on results
    async batch_processing() {
        const { users } = client();
        const uapi = usersBatchApi();
        const eapi = eventsBatchApi();
        const steps = {};
        steps.users_create = await step(() =>
            uapi.createBatchUserImportJob({ body: { requests: [{ uid: 'sdk_processing' }] } }),
        );
        const usersJob = steps.users_create.body?.job?.id;
        steps.users_status = await step(() => uapi.getBatchUserImportStatus({ jobId: usersJob }));
        steps.users_imports = await step(() => uapi.getBatchUserImports({ jobId: usersJob }));
        steps.users_errors = await step(() => uapi.getBatchUserImportErrors({ jobId: usersJob }));
        steps.events_create = await step(() =>
            eapi.createBatchEventsImportJob({ body: { requests: [{ name: 'SDK processing' }] } }),
        );
        const eventsJob = steps.events_create.body?.job?.id;
        steps.events_status = await step(() => eapi.getBatchEventsImportStatus({ jobId: eventsJob }));
        steps.events_imports = await step(() => eapi.getBatchEventsImports({ jobId: eventsJob }));
        steps.events_errors = await step(() => eapi.getBatchEventsImportErrors({ jobId: eventsJob }));
        const job = users.batchCreate(
            { body: { requests: [{ uid: 'sdk_processing_job' }] } },
            { pollInterval: 200 },
        );
        steps.sdk_job = await runJob(job, { stopAfterProcessing: 2 });
        steps.unknown_job = await step(() => uapi.getBatchUserImportStatus({ jobId: 'no-such-job' }));
        return { sent: {}, steps };
    },

    // 400 and 401 answers, and how the SDK's typed errors expose them
    async errors() {
        const { users, events } = client();
        const wrong = init({ apiKey: 'not-a-valid-key' });
        const tooManyProperties = {};
        for (let i = 0; i < 501; i += 1) tooManyProperties[`p${i}`] = i;
        const steps = {};
        steps.empty_event_name = await step(() => events.create({ body: { name: '' } }));
        steps.user_uid_too_long = await step(() => users.create({ body: { uid: 'x'.repeat(257) } }));
        steps.event_uid_too_long = await step(() =>
            events.create({ body: { name: 'Long uid', user: { uid: 'u'.repeat(257) } } }),
        );
        steps.too_many_user_properties = await step(() =>
            users.create({ body: { uid: 'sdk_many_props', properties: tooManyProperties } }),
        );
        steps.wrong_key_user = await step(() => wrong.users.create({ body: { uid: 'sdk_401' } }));
        steps.wrong_key_event = await step(() => wrong.events.create({ body: { name: 'x' } }));
        steps.wrong_key_delete = await step(() => wrong.users.delete({ uid: 'sdk_401' }));
        const job = wrong.users.batchCreate(
            { body: { requests: [{ uid: 'sdk_401_batch' }] } },
            { pollInterval: 250 },
        );
        steps.wrong_key_job = await runJob(job);
        return { sent: {}, steps };
    },

    // 429 (the caller sets a rate limit of one request, then almost nothing)
    async rate_limited() {
        const { users, events } = client();
        const steps = {};
        steps.first = await step(() => users.create({ body: { uid: 'sdk_rl_1' } }));
        steps.user_limited = await step(() => users.create({ body: { uid: 'sdk_rl_2' } }));
        steps.event_limited = await step(() => events.create({ body: { name: 'Limited' } }));
        return { sent: {}, steps };
    },

    // The SDK's batch job honours Retry-After (the caller sets 1 request/s, burst 1)
    async batch_rate_limited() {
        const { users } = client();
        const steps = {};
        steps.first = await step(() => users.create({ body: { uid: 'sdk_brl_0' } }));
        const requests = [{ uid: 'sdk_brl_1' }, { uid: 'sdk_brl_2' }];
        const job = users.batchCreate({ body: { requests } }, { pollInterval: 1500, maxRetry: 5 });
        steps.job = await runJob(job);
        return { sent: { requests }, steps };
    },
};

if (scenarioName === '--list') {
    process.stdout.write(JSON.stringify(Object.keys(scenarios)) + '\n');
    process.exit(0);
}
if (!baseUrl || !apiKey || !Object.hasOwn(scenarios, scenarioName ?? '')) {
    process.stderr.write(
        'usage: node scenarios.mjs <base-url> <api-key> <scenario>\n' +
            `scenarios: ${Object.keys(scenarios).join(', ')}\n`,
    );
    process.exit(2);
}

const started = Date.now();
const result = await scenarios[scenarioName]();
const out = {
    scenario: scenarioName,
    sdk_version: sdkVersion,
    base_url: baseUrl,
    elapsed_ms: Date.now() - started,
    unhandled,
    ...result,
};
process.stdout.write(JSON.stringify(out) + '\n');
