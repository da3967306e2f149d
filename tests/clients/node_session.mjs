// A typical application session with node-redis and ioredis at their current versions and
// default settings (then RESP3 explicitly for node-redis): connect, commands, a pipeline,
// MULTI/EXEC and WATCH, INFO. Exits non-zero with the reason on any mismatch.
// Usage: node node_session.mjs PORT
import assert from 'node:assert/strict';
import { createClient } from 'redis';
import Redis from 'ioredis';

const port = Number(process.argv[2]);
// Keys unique to this run: the server may hold an earlier run's.
const run = Date.now();

async function nodeRedis(options, tag) {
  const c = createClient({ socket: { port, host: '127.0.0.1', reconnectStrategy: false }, ...options });
  c.on('error', (e) => { console.error(`node-redis ${tag}:`, e.message); process.exit(1); });
  await c.connect();
  const k = `node:${run}:${tag}:`;
  assert.equal(await c.ping(), 'PONG');
  assert.equal(await c.set(k + 'a', '1'), 'OK');
  assert.equal(await c.get(k + 'a'), '1');
  assert.equal(await c.get(k + 'missing'), null);
  assert.deepEqual(await c.mGet([k + 'a', k + 'missing']), ['1', null]);
  assert.equal(await c.incr(k + 'n'), 1);
  assert.equal(await c.exists([k + 'a', k + 'missing']), 1);
  assert.equal(await c.del(k + 'a'), 1);
  const replies = await c.multi().set(k + 'p', 'v').get(k + 'p').incr(k + 'c').execAsPipeline();
  assert.deepEqual(replies, ['OK', 'v', 1]);
  // MULTI/EXEC, keys on any shards.
  assert.deepEqual(await c.multi().incr(k + 't1').incr(k + 't2').get(k + 'p').exec(), [1, 1, 'v']);
  // WATCH: a write by another connection aborts EXEC.
  const other = c.duplicate();
  other.on('error', (e) => { console.error(`node-redis ${tag} (other):`, e.message); process.exit(1); });
  await other.connect();
  await c.watch(k + 't1');
  await other.incr(k + 't1');
  await assert.rejects(c.multi().incr(k + 't1').exec(), (e) => e.constructor.name === 'WatchError');
  assert.equal(await c.get(k + 't1'), '2');
  await c.watch(k + 't1');
  assert.deepEqual(await c.multi().incr(k + 't1').exec(), [3]);
  await other.quit();
  const info = await c.info();
  assert.match(info, /redis_version:/);
  assert.match(info, /connected_clients:\d+/);
  await c.clientSetName('app-' + tag.replace(/\W/g, ''));
  assert.equal(await c.clientGetName(), 'app-' + tag.replace(/\W/g, ''));
  await c.quit();
}

async function ioredis() {
  const r = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1, retryStrategy: () => null });
  const k = `ioredis:${run}:`;
  assert.equal(await r.ping(), 'PONG');
  assert.equal(await r.set(k + 'a', '1'), 'OK');
  assert.equal(await r.get(k + 'a'), '1');
  assert.deepEqual(await r.mget(k + 'a', k + 'missing'), ['1', null]);
  const results = await r.pipeline().set(k + 'p', 'v').get(k + 'p').incr(k + 'n').exec();
  assert.deepEqual(results, [[null, 'OK'], [null, 'v'], [null, 1]]);
  assert.deepEqual(await r.multi().incr(k + 'n').get(k + 'n').exec(), [[null, 2], [null, '2']]);
  // WATCH: EXEC aborted by another connection's write answers null.
  const other = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1, retryStrategy: () => null });
  await r.watch(k + 'n');
  await other.incr(k + 'n');
  assert.equal(await r.multi().incr(k + 'n').exec(), null);
  assert.equal(await r.get(k + 'n'), '3');
  other.disconnect();
  assert.match(await r.info(), /redis_version:/);
  r.disconnect();
}

await nodeRedis({}, 'default');
await nodeRedis({ RESP: 2 }, 'resp2');
await nodeRedis({ RESP: 3 }, 'resp3');
await ioredis();
console.log('node-redis and ioredis: ok');
