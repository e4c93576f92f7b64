// The load side of bench/node_rotation.py: long-lived connections and connections that
// reconnect (the same client object closes and connects again), INCRing back to back through the redis-creds package, with node-redis or
// ioredis. Not meant to be run alone.
//
// node bench/node_rotation_load.mjs KIND MODULE PORT RUNTIME_DIR LONG CHURN RECONNECT_EVERY
//   KIND node-redis | ioredis; MODULE the package to load from client/node/node_modules
//   (redis, redis5, ioredis, ioredis5).
// stdout, one JSON object a line: {"ev":"ready"}; {"ev":"reauth","version":V,"conn":I,
// "t":T} each time long-lived connection I has re-AUTHed with version V (T: CLOCK_MONOTONIC
// in seconds, the clock of Python's time.monotonic()); {"ev":"change","version":V,"t":T}
// when the CredentialFile saw version V; at "stop" on stdin, {"ev":"done",...} with the
// counts and the event loop's delay (perf_hooks.monitorEventLoopDelay, 1 ms resolution).
import { createRequire } from 'node:module';
import readline from 'node:readline';
import { monitorEventLoopDelay } from 'node:perf_hooks';

const require = createRequire(new URL('../client/node/package.json', import.meta.url));
const rc = require('./index.js');
const [kind, moduleName, port, runtimeDir, nLong, nChurn, reconnectEvery] =
  process.argv.slice(2);
const lib = require(moduleName);
const stats = { ok: 0, failed: 0, reconnects: 0, reauth_failed: 0, errors: [] };
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const mono = () => Number(process.hrtime.bigint()) / 1e9;
const creds = new rc.CredentialFile('cache', { runtimeDir });
await creds.ready();
creds.on('change', (s) => out({ ev: 'change', version: s.current.version, t: mono() }));
let running = true;

function failed(err) {
  stats.failed++;
  if (stats.errors.length < 5) stats.errors.push(String(err && err.message));
}

/** A client (not connected yet): connect(), incr(key), close() (connect() may follow
 * again: the same client reconnects). onReauth(credential): it has re-AUTHed. */
function makeClient(onReauth) {
  if (kind === 'node-redis') {
    const provider = rc.nodeRedisCredentialsProvider(creds, { onError: failed });
    const client = provider.attach(lib.createClient({
      socket: { host: '127.0.0.1', port: Number(port) }, credentialsProvider: provider, RESP: 3,
    }));
    client.on('error', () => {});
    // the PING is queued behind the AUTH: its reply means the AUTH was answered
    if (onReauth) {
      provider.on('reauth', (c) => client.ping().then(() => onReauth(c), failed));
    }
    return { connect: () => client.connect(), incr: (k) => client.incr(k),
      close: () => client.quit() };
  }
  const { client, credentials } = rc.createIoredis(lib.default || lib, creds, {
    host: '127.0.0.1', port: Number(port), onError: failed, lazyConnect: true,
  });
  client.on('error', () => {});
  if (onReauth) {
    credentials.on('reauth', (r) => (r.ok ? onReauth(r.credential) : stats.reauth_failed++));
  }
  return {
    connect: () => client.connect(),
    incr: (k) => client.incr(k),
    close: async () => {
      const ended = new Promise((resolve) => client.once('end', resolve));
      await client.quit();
      await ended;
    },
  };
}

async function longLived(i) {
  const c = makeClient((cred) => out({ ev: 'reauth', version: cred.version, conn: i,
    t: mono() }));
  await c.connect();
  return async () => {
    while (running) {
      try {
        await c.incr('bench:long');
        stats.ok++;
      } catch (e) {
        failed(e);
      }
    }
    await c.close();
  };
}

async function churn() {
  const c = makeClient(null);
  while (running) {
    try {
      await c.connect();
    } catch (e) {
      failed(e);
      continue;
    }
    stats.reconnects++;
    for (let k = 0; k < Number(reconnectEvery) && running; k++) {
      try {
        await c.incr('bench:churn');
        stats.ok++;
      } catch (e) {
        failed(e);
      }
    }
    await c.close();
  }
}

const loopDelay = monitorEventLoopDelay({ resolution: 1 });
loopDelay.enable();
const loops = await Promise.all(Array.from({ length: Number(nLong) }, (_, i) => longLived(i)));
const all = loops.map((run) => run()).concat(
  Array.from({ length: Number(nChurn) }, () => churn()));
out({ ev: 'ready' });
readline.createInterface({ input: process.stdin }).on('line', async (line) => {
  if (line.trim() !== 'stop') return;
  running = false;
  await Promise.all(all);
  creds.close();
  loopDelay.disable();
  const ms = (ns) => Math.round(ns / 1e4) / 100;
  out({ ev: 'done', ...stats, loop_delay_p50_ms: ms(loopDelay.percentile(50)),
    loop_delay_p99_ms: ms(loopDelay.percentile(99)), loop_delay_max_ms: ms(loopDelay.max) });
  process.exit(0);
});
