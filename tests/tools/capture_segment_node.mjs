// Drive @segment/analytics-node against a capture server, making the same calls as the Python
// driver in capture_segment.py, which starts the server and runs this script:
//   node capture_segment_node.mjs http://127.0.0.1:PORT
// The library is resolved from the working directory (or NODE_PATH), so it can live in a temp
// directory outside the repo. Prints one JSON line {accepted, notes} on stdout.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const require = createRequire(pathToFileURL(`${process.cwd()}/`).href);
const { Analytics } = require('@segment/analytics-node');

const host = process.argv[2];
if (!host || !host.startsWith('http://127.0.0.1:')) {
  console.error('usage: node capture_segment_node.mjs http://127.0.0.1:PORT');
  process.exit(2);
}

const notes = [];
const analytics = new Analytics({ writeKey: 'test-write-key', host, maxRetries: 0 });
analytics.on('error', (err) => notes.push(`error event: ${err.code ?? ''} ${err.reason ?? err}`));

const webContext = {
  ip: '203.0.113.7',
  userAgent: 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36',
  locale: 'fr-FR',
  page: {
    url: 'https://shop.example.com/boots?color=yellow',
    path: '/boots',
    referrer: 'https://www.example.org/',
    title: 'Boots',
    search: '?color=yellow',
  },
  campaign: { name: 'spring', source: 'newsletter', medium: 'email' },
  timezone: 'Europe/Paris',
};

const calls = [
  ['identify traits plan/logins', () =>
    analytics.identify({ userId: 'userId123', traits: { plan: 'premium', logins: 5 } })],
  ['identify email/displayName', () =>
    analytics.identify({
      userId: 'userId123',
      traits: { email: 'john.doe@example.com', displayName: 'John Doe' },
    })],
  ['identify anonymous only', () =>
    analytics.identify({
      anonymousId: 'anon-7f3c2a',
      traits: { favoriteColor: 'yellow', visits: 3 },
    })],
  ['track Product Purchased', () =>
    analytics.track({
      userId: 'userId123',
      event: 'Product Purchased',
      properties: {
        order_ID: '2969302398',
        category: 'boots',
        product_name: 'yellow_cowboy_boots',
        price: 99.95,
        currency: 'EUR',
      },
    })],
  ['track nested/arrays/numbers/unicode/dates', () =>
    analytics.track({
      userId: 'userId123',
      event: 'Order Completed',
      properties: {
        order_id: '50314b8e9bcf000000000000',
        total: 199.9,
        discount: 0.0,
        whole_float: 30.0,
        quantity: 2,
        big_int: 12345678901234,
        negative: -3,
        ratio: 1e-7,
        coupon: null,
        missing: undefined,
        gift: false,
        tags: ['boots', 'yellow', 'sale'],
        scores: [1, 2.5, -3],
        products: [
          { sku: 'B-001', name: 'Café ☕ boots', price: 99.95, qty: 1 },
          { sku: 'B-002', name: '東京 🚀 laces', price: 4, qty: 3 },
        ],
        shipping: { address: { city: 'Zürich', zip: '8001' }, express: true },
        delivered_at: new Date(Date.UTC(2024, 4, 17, 14, 30, 5, 123)),
        local_time_string: '2024-05-17T16:30:05+02:00',
        not_a_number: Number.NaN,
        empty_list: [],
        empty_object: {},
      },
    })],
  ['track anonymous with custom Date timestamp', () =>
    analytics.track({
      anonymousId: 'anon-7f3c2a',
      event: 'Signed Up',
      properties: { plan: 'trial' },
      timestamp: new Date('2024-01-02T03:04:05.678+02:00'),
    })],
  ['track with string timestamp', () =>
    analytics.track({
      userId: 'userId123',
      event: 'String Timestamp',
      properties: { note: 'ISO string with offset passed as timestamp' },
      timestamp: '2023-12-31T23:59:59+01:00',
    })],
  ['track integrations FullStory false', () =>
    analytics.track({
      userId: 'userId123',
      event: 'Hidden From FullStory',
      properties: { n: 1 },
      integrations: { FullStory: false },
    })],
  ['track integrations All false FullStory true', () =>
    analytics.track({
      userId: 'userId123',
      event: 'Only FullStory',
      properties: { n: 2 },
      integrations: { All: false, FullStory: true },
    })],
  ['track with web context and both ids', () =>
    analytics.track({
      userId: 'userId123',
      anonymousId: 'anon-7f3c2a',
      event: 'Checkout Started',
      properties: { cart_value: 104.5 },
      context: webContext,
    })],
  ['track with custom messageId', () =>
    analytics.track({
      userId: 'userId123',
      event: 'Custom Message Id',
      messageId: 'custom-message-id-0001',
    })],
  ['page with name', () =>
    analytics.page({ userId: 'userId123', name: 'Home', properties: { url: 'https://x.io/' } })],
  ['page with category and name', () =>
    analytics.page({
      userId: 'userId123',
      category: 'Docs',
      name: 'Getting Started',
      properties: { url: 'https://x.io/docs/start', title: 'Getting Started' },
      context: { page: { url: 'https://x.io/docs/start' } },
    })],
  ['page with neither', () =>
    analytics.page({ anonymousId: 'anon-7f3c2a', properties: { path: '/pricing' } })],
  ['screen with category and name', () =>
    analytics.screen({
      userId: 'userId123',
      category: 'Settings',
      name: 'Notifications',
      properties: { badge: 3 },
    })],
  ['screen with name', () => analytics.screen({ userId: 'userId123', name: 'Home Feed' })],
  ['group', () =>
    analytics.group({
      userId: 'userId123',
      groupId: 'acme-inc',
      traits: { name: 'Acme Inc', employees: 120, plan: 'enterprise' },
    })],
  ['alias', () => analytics.alias({ userId: 'userId123', previousId: 'anon-7f3c2a' })],
];

// Calls a strict library would refuse. Each carries a recognisable messageId so that, if this
// library accepts it, the event can be picked out of the captured data.
const questionable = [
  ['identify without any id', () =>
    analytics.identify({ traits: { plan: 'x' }, messageId: 'lenient-identify-without-id' })],
  ['track without event name', () =>
    analytics.track({ userId: 'userId123', messageId: 'lenient-track-without-event' })],
  ['alias without previousId', () =>
    analytics.alias({ userId: 'userId123', messageId: 'lenient-alias-without-previousId' })],
  ['group without groupId', () =>
    analytics.group({ userId: 'userId123', messageId: 'lenient-group-without-groupId' })],
  ['track numeric userId', () =>
    analytics.track({ userId: 42, event: 'Numeric User Id', messageId: 'lenient-numeric-userId' })],
];

function attempt(label, call) {
  try {
    call();
    return true;
  } catch (err) {
    notes.push(`${label}: rejected with ${err.name}: ${err.field ?? ''} ${err.message}`);
    return false;
  }
}

let accepted = 0;
for (const [label, call] of calls) {
  if (attempt(label, call)) accepted += 1;
}
for (const [label, call] of questionable) {
  if (attempt(label, call)) {
    notes.push(`${label}: accepted`);
    accepted += 1;
  }
}
if (typeof analytics.delete !== 'function') {
  notes.push('delete: @segment/analytics-node has no delete call');
}
await analytics.closeAndFlush({ timeout: 30000 });
console.log(JSON.stringify({ accepted, notes }));
