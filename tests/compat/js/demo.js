'use strict';
// Drive a running layotto-py sidecar with Layotto's own published Node.js SDK
// (npm "layotto", pinned in package.json), the way Layotto's quickstarts do:
// hello, state, lock, sequencer.
//
// The SDK finds the sidecar through runtime_GRPC_HOST / runtime_GRPC_PORT
// (default 127.0.0.1:34904). Nothing here works around the sidecar: every
// answer is compared with what Layotto gives. Any mismatch prints
// "MISMATCH <step>: expected ... got ..." on stderr and exits 1; success prints
// one JSON line summarising the results on stdout and exits 0.

const { randomBytes } = require('node:crypto');
const { isDeepStrictEqual, inspect } = require('node:util');
const { Client, Server, RuntimeTypes } = require('layotto');

const HELLO = 'helloworld';
const GREETING = 'greeting'; // the `hello:` value of configs/*.yaml
const STATE = 'state_demo';
const LOCK = 'lock_demo';
const SEQUENCER = 'sequencer_demo';
const CONFIG = 'config_demo';
const PUBSUB = 'pub_subs_demo';
const APP_ID = 'app1';

// Layotto's UnlockResponse.Status and the gRPC code of an etag mismatch.
const UNLOCK = { SUCCESS: 0, LOCK_UNEXIST: 1, LOCK_BELONG_TO_OTHERS: 2, INTERNAL_ERROR: 3 };
const GRPC_ABORTED = 10;

const suffix = `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
const client = new Client(); // port and host from the environment, as an app would
const mismatches = [];

function show(value) {
  return inspect(value, { depth: 6, breakLength: Infinity });
}

function check(step, expected, got) {
  if (!isDeepStrictEqual(expected, got)) {
    mismatches.push(step);
    console.error(`MISMATCH ${step}: expected ${show(expected)} got ${show(got)}`);
    return false;
  }
  return true;
}

function expectTrue(step, condition, what, got) {
  if (!condition) {
    mismatches.push(step);
    console.error(`MISMATCH ${step}: expected ${what} got ${show(got)}`);
  }
  return condition;
}

// An SDK call that must succeed: a gRPC error is a mismatch, and stops the run
// (later steps build on it).
async function call(step, fn) {
  try {
    return await fn();
  } catch (err) {
    const got = err && err.code !== undefined ? { code: err.code, details: err.details } : err;
    console.error(`MISMATCH ${step}: expected success got error ${show(got)}`);
    mismatches.push(step);
    throw new Abort();
  }
}

// An SDK call that must fail with a given gRPC status code.
async function callFails(step, expectedCode, fn) {
  try {
    const res = await fn();
    console.error(`MISMATCH ${step}: expected gRPC code ${expectedCode} got success ${show(res)}`);
    mismatches.push(step);
    return null;
  } catch (err) {
    check(step, expectedCode, err && err.code);
    return { code: err.code, details: err.details };
  }
}

class Abort extends Error {}

const text = item => (item === null ? null : Buffer.from(item.value).toString('utf8'));

async function hello() {
  const named = await call('hello.sayHello(name)', () =>
    client.hello.sayHello({ serviceName: HELLO, name: 'layotto-js-sdk' }));
  check('hello.sayHello(name)', `${GREETING}, layotto-js-sdk`, named);
  // The SDK's default service is "helloworld"; no name gives the bare greeting.
  const bare = await call('hello.sayHello()', () => client.hello.sayHello());
  check('hello.sayHello()', GREETING, bare);
  return { named, bare };
}

async function state() {
  const key1 = `key1-${suffix}`;
  const out = {};

  // save / get
  await call('state.save key1', () =>
    client.state.save({ storeName: STATE, states: { key: key1, value: 'hello world' } }));
  const got1 = await call('state.get key1', () => client.state.get({ storeName: STATE, key: key1 }));
  expectTrue('state.get key1', got1 !== null, 'an item', got1);
  if (got1 === null) throw new Abort();
  check('state.get key1 .key', key1, got1.key);
  check('state.get key1 .value', 'hello world', text(got1));
  expectTrue('state.get key1 .etag', typeof got1.etag === 'string' && got1.etag !== '',
    'a non-empty etag', got1.etag);
  out.get = { value: text(got1), etag: got1.etag };

  // saving again without etag (the SDK sends etag "0") overwrites and changes the etag
  await call('state.save key1 again', () =>
    client.state.save({ storeName: STATE, states: { key: key1, value: 'hello again' } }));
  const got1b = await call('state.get key1 again', () =>
    client.state.get({ storeName: STATE, key: key1 }));
  check('state.get key1 again .value', 'hello again', text(got1b));
  expectTrue('state.get key1 again .etag', got1b && got1b.etag !== '' && got1b.etag !== got1.etag,
    `a new non-empty etag (not ${got1.etag})`, got1b && got1b.etag);

  // a stale etag is refused with ABORTED, and the value stays
  out.staleDelete = await callFails('state.delete key1 stale etag', GRPC_ABORTED, () =>
    client.state.delete({ storeName: STATE, key: key1, etag: got1.etag }));
  const still = await call('state.get key1 after stale delete', () =>
    client.state.get({ storeName: STATE, key: key1 }));
  check('state.get key1 after stale delete', 'hello again', text(still));

  // delete with the etag from get
  await call('state.delete key1 with etag', () =>
    client.state.delete({ storeName: STATE, key: key1, etag: got1b.etag }));
  const gone = await call('state.get key1 after delete', () =>
    client.state.get({ storeName: STATE, key: key1 }));
  check('state.get key1 after delete', null, gone);
  out.deletedWithEtag = gone === null;

  // bulk save, getBulk with a missing key
  const bulk = [1, 2, 3].map(i => ({ key: `bulk${i}-${suffix}`, value: `value ${i}` }));
  const missing = `missing-${suffix}`;
  await call('state.save bulk', () => client.state.save({ storeName: STATE, states: bulk }));
  const keys = [...bulk.map(s => s.key), missing];
  const items = await call('state.getBulk', () => client.state.getBulk({ storeName: STATE, keys }));
  // The SDK drops items whose value is empty, so the missing key is not listed.
  const byKey = Object.fromEntries(items.map(i => [i.key, Buffer.from(i.value).toString('utf8')]));
  check('state.getBulk values', Object.fromEntries(bulk.map(s => [s.key, s.value])), byKey);
  expectTrue('state.getBulk etags', items.every(i => typeof i.etag === 'string' && i.etag !== ''),
    'a non-empty etag on every item', items.map(i => i.etag));

  // The same GetBulkState through the SDK's generated stub: the missing key
  // must come back as an item with empty data and no etag (as Layotto answers).
  const raw = await call('GetBulkState (SDK stub)', () => new Promise((resolve, reject) => {
    const req = new RuntimeTypes.GetBulkStateRequest();
    req.setStoreName(STATE);
    req.setKeysList(keys);
    client._runtime.getBulkState(req, (err, res) => (err ? reject(err) : resolve(res)));
  }));
  const rawItems = raw.getItemsList().map(i => ({
    key: i.getKey(), data: Buffer.from(i.getData_asU8()).toString('utf8'),
    hasEtag: i.getEtag() !== '', error: i.getError(),
  }));
  check('GetBulkState (SDK stub) items', [
    ...bulk.map(s => ({ key: s.key, data: s.value, hasEtag: true, error: '' })),
    { key: missing, data: '', hasEtag: false, error: '' },
  ], [...rawItems].sort((a, b) => keys.indexOf(a.key) - keys.indexOf(b.key)));
  out.getBulk = { keys: keys.length, found: items.length, missingItem: rawItems.find(i => i.key === missing) || null };

  // transaction: upsert a new key and delete bulk1
  const txKey = `tx-${suffix}`;
  if (typeof client.state.executeTransaction === 'function') {
    await call('state.executeTransaction', () => client.state.executeTransaction({
      storeName: STATE,
      operations: [
        { operationType: 'upsert', request: { key: txKey, value: 'from a transaction' } },
        { operationType: 'delete', request: { key: bulk[0].key } },
      ],
    }));
    const tx = await call('state.get tx key', () => client.state.get({ storeName: STATE, key: txKey }));
    check('state.get tx key', 'from a transaction', text(tx));
    const deleted = await call('state.get bulk1 after tx', () =>
      client.state.get({ storeName: STATE, key: bulk[0].key }));
    check('state.get bulk1 after tx', null, deleted);
    out.transaction = { upserted: text(tx), deleted: deleted === null };
  }

  // deleteBulk the rest
  await call('state.deleteBulk', () => client.state.deleteBulk({
    storeName: STATE, states: [{ key: bulk[1].key }, { key: bulk[2].key }, { key: txKey }],
  }));
  const after = await call('state.getBulk after deleteBulk', () =>
    client.state.getBulk({ storeName: STATE, keys }));
  check('state.getBulk after deleteBulk', [], after);
  out.deleteBulk = after.length === 0;
  return out;
}

async function lock() {
  const resourceId = `resource-${suffix}`;
  const owner1 = `owner1-${client.lock.uuid()}`;
  const owner2 = `owner2-${client.lock.uuid()}`;
  const tryLock = (owner, step) => call(step, () =>
    client.lock.tryLock({ storeName: LOCK, resourceId, lockOwner: owner, expire: 1000 }));
  const unLock = (owner, step) => call(step, () =>
    client.lock.unLock({ storeName: LOCK, resourceId, lockOwner: owner }));

  const out = {};
  out.owner1TryLock = await tryLock(owner1, 'lock.tryLock owner1');
  check('lock.tryLock owner1', true, out.owner1TryLock);
  out.owner2TryLock = await tryLock(owner2, 'lock.tryLock owner2 while held');
  check('lock.tryLock owner2 while held', false, out.owner2TryLock);
  out.owner2UnlockHeld = await unLock(owner2, 'lock.unLock owner2 while owner1 holds');
  check('lock.unLock owner2 while owner1 holds', { status: UNLOCK.LOCK_BELONG_TO_OTHERS },
    out.owner2UnlockHeld);
  out.owner1Unlock = await unLock(owner1, 'lock.unLock owner1');
  check('lock.unLock owner1', { status: UNLOCK.SUCCESS }, out.owner1Unlock);
  out.owner2TryLockAfter = await tryLock(owner2, 'lock.tryLock owner2 after release');
  check('lock.tryLock owner2 after release', true, out.owner2TryLockAfter);
  out.owner2Unlock = await unLock(owner2, 'lock.unLock owner2');
  check('lock.unLock owner2', { status: UNLOCK.SUCCESS }, out.owner2Unlock);
  out.unlockFree = await unLock(owner2, 'lock.unLock of a free resource');
  check('lock.unLock of a free resource', { status: UNLOCK.LOCK_UNEXIST }, out.unlockFree);
  return out;
}

async function sequencer() {
  const key = `seq-${suffix}`;
  const ids = [];
  for (let i = 0; i < 10; i++) {
    ids.push(await call(`sequencer.getNextId #${i + 1}`, () =>
      client.sequencer.getNextId({ storeName: SEQUENCER, key })));
  }
  // The SDK gives int64 ids as decimal strings.
  check('sequencer.getNextId 1..10', Array.from({ length: 10 }, (_, i) => String(i + 1)), ids);
  return { ids };
}

// Resolves with the first value `take` accepts from a callback-fed queue, or
// rejects after `ms`.
function waitFor(step, queue, take, ms = 20000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      mismatches.push(step);
      console.error(`MISMATCH ${step}: nothing arrived in ${ms} ms; got ${show(queue.items)}`);
      reject(new Abort());
    }, ms);
    const look = () => {
      const found = queue.items.find(take);
      if (found !== undefined) {
        clearTimeout(timer);
        resolve(found);
        return true;
      }
      return false;
    };
    if (!look()) queue.waiters.push(look);
  });
}

function feed() {
  const queue = { items: [], waiters: [] };
  queue.push = item => {
    queue.items.push(item);
    queue.waiters = queue.waiters.filter(look => !look());
  };
  return queue;
}

async function configuration() {
  const key = `cfg-${suffix}`;
  const out = {};
  await call('configuration.save v1', () => client.configuration.save({
    storeName: CONFIG, appId: APP_ID, items: [{ key, content: 'v1' }],
  }));
  const got = await call('configuration.get', () =>
    client.configuration.get({ storeName: CONFIG, appId: APP_ID, keys: [key] }));
  check('configuration.get', [{ key, content: 'v1', group: 'default', label: 'default' }],
    got.map(i => ({ key: i.key, content: i.content, group: i.group, label: i.label })));
  out.get = got.map(i => i.content);

  // A subscription gets the current value first, then the change.
  const updates = feed();
  const stream = client.configuration.subscribe({
    storeName: CONFIG, appId: APP_ID, keys: [key],
    onData: items => items.forEach(i => updates.push(i.content)),
    onClose: () => {},
  });
  await waitFor('configuration.subscribe current value', updates, c => c === 'v1');
  await call('configuration.save v2', () => client.configuration.save({
    storeName: CONFIG, appId: APP_ID, items: [{ key, content: 'v2' }],
  }));
  await waitFor('configuration.subscribe change', updates, c => c === 'v2');
  out.subscribed = [...updates.items];
  stream.cancel();

  await call('configuration.delete', () =>
    client.configuration.delete({ storeName: CONFIG, appId: APP_ID, keys: [key] }));
  const gone = await call('configuration.get after delete', () =>
    client.configuration.get({ storeName: CONFIG, appId: APP_ID, keys: [key] }));
  check('configuration.get after delete', [], gone);
  out.deleted = gone.length === 0;
  return out;
}

async function pubsub() {
  const topic = `topic-${suffix}`;
  const received = feed();
  const server = new Server(process.env.appcallback_GRPC_PORT, undefined, {
    logger: { info() {}, warn() {}, error: console.error, debug() {} },
  });
  // In SDK 1.18.0 `subscribe` only registers the handler; what
  // ListTopicSubscriptions answers is added separately.
  server.pubsub.subscribe(PUBSUB, topic, async (data, request) => {
    received.push({ data, id: request.id, source: request.source, topic: request.topic });
  });
  server.pubsub.addPubSubSubscription(PUBSUB, topic);
  await server.start(); // after the sidecar: it keeps asking until the app answers
  try {
    await call('pubsub.publish', () =>
      client.pubsub.publish({ pubsubName: PUBSUB, topic, data: { order: 7, suffix } }));
    const event = await waitFor('pubsub delivery to the SDK server', received,
      e => e.data && e.data.suffix === suffix);
    check('pubsub delivered data', { order: 7, suffix }, event.data);
    check('pubsub delivered topic', topic, event.topic);
    check('pubsub delivered source', 'runtime', event.source);
    return { data: event.data, hasId: event.id !== '' };
  } finally {
    await server.close();
  }
}

async function main() {
  const summary = { sdk: require('layotto/package.json').version, target: `${client.host}:${client.port}`, suffix };
  try {
    summary.hello = await hello();
    summary.state = await state();
    summary.lock = await lock();
    summary.sequencer = await sequencer();
    summary.configuration = await configuration();
    summary.pubsub = await pubsub();
  } catch (err) {
    if (!(err instanceof Abort)) {
      console.error('demo failed:', err);
      mismatches.push('exception');
    }
  } finally {
    client.close();
  }
  if (mismatches.length > 0) {
    console.error(`${mismatches.length} mismatch(es): ${mismatches.join('; ')}`);
    process.exitCode = 1;
    return;
  }
  summary.ok = true;
  console.log(JSON.stringify(summary));
}

main();
