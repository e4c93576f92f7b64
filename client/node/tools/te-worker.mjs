// te-worker: a long-lived node-redis or ioredis client for the token-expiry test
// (tests/integration/test_token_expiry.py) and bench/token_expiry.py, one kind per
// process, the protocol of client/tests/py_longlived.py:
//
//   node tools/te-worker.mjs <module> <resp> subscriber|blocking|pooled|naive
//
// module: redis, redis5 (node-redis 6, 5), ioredis, ioredis5; resp: 2 or 3. Environment:
// REDIS_HOST, REDIS_PORT, REDIS_CREDS_NAME, REDIS_CREDS_RUNTIME_DIR, TE_KEY,
// TE_CLIENT_NAME. Payloads are sequence numbers 1..N then "end:N"; it prints "ready",
// then at "end:N" (pooled, naive: at SIGTERM) one JSON line of counts. Connection errors
// are counted (the clients reconnect by themselves).
// - subscriber: nodeRedisSubscriber / ioredisSubscriber (RESP3: in place, `reauths`;
//   RESP2: make-before-break, `switches`);
// - blocking: blockingCommand(client, credentials, ['BLPOP', key], {timeout: 1});
// - pooled: three connections; INCR every 20 ms on the first, the two others idle until
//   one INCR each at the end (they must have been re-AUTHed in place, or be dropped);
// - naive: BLPOP on a client given the credential read at start, never re-AUTHed.
import {
  CredentialFile, nodeRedisCredentialsProvider, attachIoredis, blockingCommand,
  nodeRedisSubscriber, ioredisSubscriber,
} from 'redis-creds';

const [moduleName, respArg, kind] = process.argv.slice(2);
const resp = Number(respArg);
const ioredis = moduleName.startsWith('ioredis');
const lib = await import(moduleName);
const env = process.env;
const KEY = env.TE_KEY || 'te';
const NAME = env.TE_CLIENT_NAME || 'node-longlived';
const HOST = env.REDIS_HOST || '127.0.0.1';
const PORT = Number(env.REDIS_PORT || 6379);

const k = {
  lib: `${ioredis ? 'ioredis' : 'node-redis'}${resp === 3 ? '-resp3' : ''}`,
  kind, received: 0, missing: null, duplicates: 0, errors: 0, switches: 0, reauths: 0,
  ok: 0, failed: 0, end: null,
};
const seen = new Set();
let stopping = false;
let finish;
const finished = new Promise((resolve) => { finish = resolve; });
process.on('SIGTERM', () => { stopping = true; finish(); });

function log(what, err) {
  console.error(`${kind}: ${what}: ${err && err.message ? err.message : err}`);
}

/** Counts one payload; true at end:N. */
function payload(data) {
  const s = String(data);
  if (s.startsWith('end:')) {
    k.end = Number(s.slice(4));
    return true;
  }
  k.received++;
  const n = Number(s);
  if (seen.has(n)) k.duplicates++;
  seen.add(n);
  return false;
}

function report() {
  if (k.end !== null) {
    let have = 0;
    for (const n of seen) if (n >= 1 && n <= k.end) have++;
    k.missing = k.end - have;
  }
  console.log(JSON.stringify(k));
}

/** A client on the credential (adapter attached), connected; {client, credentials}. */
async function open(creds, naive = false) {
  const onError = (err) => log('credential', err);
  if (ioredis) {
    const opts = { host: HOST, port: PORT, connectionName: NAME, lazyConnect: true,
      maxRetriesPerRequest: null, protocol: resp }; // ioredis 6 defaults to 3
    if (naive) Object.assign(opts, creds.get().current.basicAuth());
    const client = new lib.default(opts);
    const credentials = naive ? null : attachIoredis(client, creds, { onError });
    client.on('error', (err) => { k.errors++; log('redis', err); });
    await client.connect();
    return { client, credentials };
  }
  const opts = { socket: { host: HOST, port: PORT }, name: NAME, RESP: resp };
  let credentials = null;
  if (naive) Object.assign(opts, creds.get().current.basicAuth());
  else opts.credentialsProvider = credentials = nodeRedisCredentialsProvider(creds, { onError });
  const client = lib.createClient(opts);
  if (credentials) credentials.attach(client);
  client.on('error', (err) => { k.errors++; log('redis', err); });
  await client.connect();
  return { client, credentials };
}

async function close(client) {
  if (ioredis) client.disconnect();
  else if (client.isOpen) await client.close();
}

async function subscriber(creds) {
  const sub = {
    channels: [KEY],
    onMessage: (message) => {
      if (payload(message)) finish();
    },
    onError: (err) => { k.errors++; log('subscriber', err); },
  };
  const opts = ioredis
    ? { host: HOST, port: PORT, connectionName: NAME, protocol: resp }
    : { socket: { host: HOST, port: PORT }, name: NAME, RESP: resp };
  const s = ioredis ? await ioredisSubscriber(lib.default, creds, opts, sub)
    : await nodeRedisSubscriber(lib.createClient, creds, opts, sub);
  s.credentials.on('reauth', () => { k.reauths++; });
  if (s.inPlace !== (resp === 3)) throw new Error(`inPlace ${s.inPlace} on RESP${resp}`);
  console.log('ready');
  await finished;
  k.switches = s.switches;
  await s.close();
}

async function blocking(creds, naive) {
  const { client, credentials } = await open(creds, naive);
  if (credentials) credentials.on('reauth', () => { k.reauths++; });
  console.log('ready');
  while (!stopping) {
    let reply;
    try {
      // a naive client refused at reconnect never answers: SIGTERM ends the wait
      const naiveCall = () => (ioredis ? client.call('BLPOP', KEY, '1')
        : client.sendCommand(['BLPOP', KEY, '1']));
      const call = naive ? naiveCall()
        : blockingCommand(client, credentials, ['BLPOP', KEY], { timeout: 1 });
      reply = await Promise.race([call, finished.then(() => null)]);
    } catch (err) {
      log('BLPOP', err);
      if (naive) k.errors++;
      await new Promise((r) => setTimeout(r, 100));
      continue;
    }
    if (!reply) continue;
    const value = Array.isArray(reply) ? reply[1] : reply.element;
    if (payload(value)) break;
  }
  if (!naive) await close(client);
}

async function pooled(creds) {
  const conns = [];
  for (let i = 0; i < 3; i++) conns.push(await open(creds));
  for (const c of conns) c.credentials.on('reauth', () => { k.reauths++; });
  console.log('ready');
  while (!stopping) {
    try {
      await conns[0].client.incr(KEY);
      k.ok++;
    } catch (err) {
      k.failed++;
      log('INCR', err);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  for (const c of conns.slice(1)) {
    try {
      await c.client.incr(KEY);
      k.ok++;
    } catch (err) {
      k.failed++;
      log('INCR (idle connection)', err);
    }
  }
  for (const c of conns) await close(c.client);
}

const creds = new CredentialFile(env.REDIS_CREDS_NAME || 'cache', { pollIntervalMs: 500 });
await creds.ready();
if (kind === 'subscriber') await subscriber(creds);
else if (kind === 'blocking' || kind === 'naive') await blocking(creds, kind === 'naive');
else if (kind === 'pooled') await pooled(creds);
else throw new Error(`unknown kind ${kind}`);
report();
creds.close();
process.exit(0);
