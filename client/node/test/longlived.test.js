'use strict';
// lib/longlived.js with stand-ins for the clients (no Redis; the real clients through the
// token-enforcing proxy are tests/integration/test_token_expiry.py): the cap of blocking
// calls, and the order of a make-before-break switch.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { EventEmitter } = require('node:events');
const {
  CredentialFile, blockSeconds, blockingCommand, Subscriber, BLOCK_MARGIN, MIN_BLOCK,
  attachIoredis, nodeRedisCredentialsProvider,
} = require('..');
const esm = import('../index.mjs');

function setup(t, expiresInMs) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rc-node-ll-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const write = (password, inMs = expiresInMs) => {
    const doc = { format: 1, username: 'app', password, version: password };
    if (inMs !== null) doc.expires_at = new Date(Date.now() + inMs).toISOString();
    fs.writeFileSync(path.join(dir, '.tmp'), JSON.stringify(doc));
    fs.renameSync(path.join(dir, '.tmp'), path.join(dir, 'cache.json'));
  };
  write('one');
  const cf = new CredentialFile('cache', { runtimeDir: dir, watch: false });
  return { cf, write };
}

test('blockSeconds: the caller, the expiry minus 2 s, the command timeout; at least 0.1 s', () => {
  const now = 1_000_000;
  assert.equal(BLOCK_MARGIN, 2);
  assert.equal(blockSeconds(now + 10_000, 0, { now }), 8);
  assert.equal(blockSeconds(now + 10_000, 3, { now }), 3);
  assert.equal(blockSeconds(now - 1000, 5, { now }), MIN_BLOCK);
  assert.equal(blockSeconds(null, 0, { now }), 0); // nothing expires: block forever
  assert.equal(blockSeconds(null, 5, { now, commandTimeout: 3 }), 2);
  assert.equal(blockSeconds(now + 10_000, 0, { now, margin: 5 }), 5);
});

test('blockingCommand caps each call before the expiry of the credential in use', async (t) => {
  const { cf, write } = setup(t, 10_000);
  const provider = nodeRedisCredentialsProvider(cf);
  const sent = [];
  let reauths = 0;
  const listener = { onNext: () => { reauths++; }, onError: () => {} };
  await provider.subscribe(listener);
  // node-redis: sendCommand(array); null twice (the cap passed), then a reply
  const replies = [null, null, ['k', 'v']];
  const client = {
    sendCommand: async (args) => {
      sent.push(args);
      if (sent.length === 1) { // a new credential, good for an hour, arrives meanwhile
        write('two', 3_600_000);
        cf.reload();
      }
      return replies.shift();
    },
  };
  assert.deepEqual(await blockingCommand(client, provider, ['BLPOP', 'k']), ['k', 'v']);
  assert.equal(reauths, 1, 'the provider re-AUTHed at the change');
  assert.deepEqual(sent[0].slice(0, 2), ['BLPOP', 'k']);
  const caps = sent.map((a) => Number(a[2]));
  assert.ok(caps[0] > 7 && caps[0] <= 8, `first cap ${caps[0]}: 10 s token minus 2 s`);
  assert.ok(caps[1] > 3590, `then the new credential's expiry: ${caps[1]}`);
  provider.close();
});

test('blockingCommand returns null after the caller\'s timeout (ioredis call())', async (t) => {
  const { cf } = setup(t, null);
  const client = new EventEmitter();
  client.options = { commandTimeout: 60_000 };
  client.status = 'wait';
  const calls = [];
  client.call = async (...args) => {
    calls.push(args);
    await new Promise((r) => setTimeout(r, Number(args[2]) * 1000));
    return null;
  };
  const creds = attachIoredis(client, cf);
  const t0 = Date.now();
  assert.equal(await blockingCommand(client, creds, ['BRPOP', 'q'], { timeout: 0.3 }), null);
  assert.ok(Date.now() - t0 >= 290);
  assert.ok(Number(calls[0][2]) <= 0.3, `capped by the caller: ${calls[0][2]}`);
  assert.equal(client.options.password, 'one');
  creds.close();
});

function fakeDriver(cf, log, { inPlace = false, failOpen = () => false } = {}) {
  let n = 0;
  return {
    inPlace,
    open: async () => {
      if (failOpen()) throw new Error('connect refused');
      const id = ++n;
      log.push(`open ${id}`);
      return { id, credentials: { credential: cf.get().current } };
    },
    subscribe: async (c) => { log.push(`subscribe ${c.id}`); },
    unsubscribe: async (c) => { log.push(`unsubscribe ${c.id}`); },
    close: async (c) => { log.push(`close ${c.id}`); },
  };
}
test('make-before-break: the new connection subscribes before the old one leaves', async (t) => {
  const { cf, write } = setup(t, 60_000);
  const log = [];
  const sub = await new Subscriber(cf, fakeDriver(cf, log)).start();
  assert.equal(sub.inPlace, false);
  cf.reload(); // the same file: no switch
  write('two');
  cf.reload();
  await sub._chain;
  assert.deepEqual(log, ['open 1', 'subscribe 1', 'open 2', 'subscribe 2', 'unsubscribe 1',
    'close 1']);
  assert.equal(sub.switches, 1);
  assert.ok(sub.duplicatesPossible);
  assert.equal(sub.credentials.credential.password, 'two');
  await sub.close();
  assert.equal(log.at(-1), 'close 2');
  write('three');
  cf.reload();
  assert.equal(sub.switches, 1, 'closed: no more switches');
});

test('a failed switch keeps the old subscription and is tried again', async (t) => {
  const { cf, write } = setup(t, 60_000);
  const log = [];
  let fail = false;
  const sub = await new Subscriber(cf, fakeDriver(cf, log, { failOpen: () => fail })).start();
  const errors = [];
  sub.on('error', (e) => errors.push(e.message));
  fail = true;
  write('two');
  cf.reload();
  await sub._chain;
  assert.deepEqual(errors, ['connect refused']);
  assert.equal(sub.switches, 0);
  assert.ok(sub._retry, 'a retry is scheduled');
  fail = false;
  await sub._schedule();
  assert.equal(sub.switches, 1);
  assert.deepEqual(log.slice(-2), ['unsubscribe 1', 'close 1']);
  await sub.close();
});

// The switch against the clock (node:test's mock setTimeout; Date stays real): the old
// connection's token expires 4 s after the change, as in the token-expiry test, so the
// switch must be done well before; a stuck step must not hold it until the server drops
// the old connection.
async function settled(p) {
  // true once p settled; false when it is still pending after the event loop turned
  let done = false;
  p.then(() => { done = true; }, () => { done = true; });
  await new Promise((r) => setImmediate(r));
  return done;
}

test('a change while the first connection subscribes is not missed', async (t) => {
  // the node-redis RESP2 subscriber of the token-expiry test: the token changed while
  // start() subscribed; its adapter cannot AUTH a subscribed RESP2 connection, and the
  // subscriber switched only at the next token, when the server closed the first one
  const { cf, write } = setup(t, 8_000);
  const log = [];
  const driver = fakeDriver(cf, log);
  driver.subscribe = async (c) => {
    log.push(`subscribe ${c.id}`);
    if (c.id === 1) {
      write('two', 12_000);
      cf.reload();
    }
  };
  const sub = await new Subscriber(cf, driver).start();
  await sub._chain;
  assert.equal(sub.switches, 1, 'switched to the credential published meanwhile');
  assert.equal(sub.credentials.credential.password, 'two');
  assert.deepEqual(log, ['open 1', 'subscribe 1', 'open 2', 'subscribe 2', 'unsubscribe 1',
    'close 1']);
  await sub.close();
});

test('a failed switch is tried again at once, then after 50 ms, not after 1 s', async (t) => {
  const { cf, write } = setup(t, 4_000);
  const log = [];
  let failures = 0;
  const driver = fakeDriver(cf, log, { failOpen: () => failures-- > 0 });
  const sub = await new Subscriber(cf, driver).start();
  failures = 2;
  const errors = [];
  sub.on('error', (e) => errors.push(e.message));
  t.mock.timers.enable({ apis: ['setTimeout'] });
  write('two');
  cf.reload();
  await sub._chain; // first try: refused
  t.mock.timers.tick(0);
  await sub._chain; // second try, at once: refused
  assert.equal(errors.length, 2);
  t.mock.timers.tick(50);
  await sub._chain; // third try, 50 ms later
  assert.equal(sub.switches, 1, 'switched within 50 ms of the second failure');
  assert.deepEqual(log.slice(-2), ['unsubscribe 1', 'close 1']);
  t.mock.timers.reset();
  await sub.close();
});

test('a connect that hangs is given up 2 s before the old token expires and tried again',
  async (t) => {
    const { cf, write } = setup(t, 4_000);
    const log = [];
    const driver = fakeDriver(cf, log);
    const open = driver.open;
    let calls = 0;
    let release = null;
    driver.open = async () => {
      if (++calls !== 2) return open(); // the first switch's attempt hangs until released
      await new Promise((r) => { release = r; });
      log.push('late');
      return { id: 'late', credentials: { credential: cf.get().current } };
    };
    const sub = await new Subscriber(cf, driver).start();
    sub.on('error', () => {});
    t.mock.timers.enable({ apis: ['setTimeout'] });
    write('two');
    cf.reload();
    assert.equal(await settled(sub._chain), false, 'the first attempt hangs');
    t.mock.timers.tick(2_000); // 4 s token, 2 s margin: the attempt's deadline
    assert.equal(await settled(sub._chain), true, 'given up at the deadline');
    t.mock.timers.tick(0); // the retry
    await sub._chain;
    assert.equal(sub.switches, 1);
    assert.equal(sub.credentials.credential.password, 'two');
    release();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(log.slice(-3), ['late', 'subscribe late', 'close late'],
      'the late connection is closed');
    t.mock.timers.reset();
    await sub.close();
  });

test('an old connection whose unsubscribe hangs is destroyed within 1 s; the next switch '
  + 'goes on', async (t) => {
  const { cf, write } = setup(t, 4_000);
  const log = [];
  const driver = fakeDriver(cf, log);
  driver.unsubscribe = (c) => {
    log.push(`unsubscribe ${c.id}`);
    return c.id === 1 ? new Promise(() => {}) : Promise.resolve();
  };
  driver.destroy = (c) => log.push(`destroy ${c.id}`);
  const sub = await new Subscriber(cf, driver).start();
  t.mock.timers.enable({ apis: ['setTimeout'] });
  write('two');
  cf.reload();
  assert.equal(await settled(sub._chain), false, 'unsubscribing the old one hangs');
  assert.equal(sub.credentials.credential.password, 'two', 'the new one is in place');
  t.mock.timers.tick(1_000);
  assert.equal(await settled(sub._chain), true, 'given up after 1 s');
  assert.deepEqual(log.slice(-2), ['unsubscribe 1', 'destroy 1']);
  assert.equal(sub.switches, 1);
  write('three');
  cf.reload();
  await sub._chain;
  assert.equal(sub.switches, 2, 'the next switch was not held up');
  assert.deepEqual(log.slice(-2), ['unsubscribe 2', 'close 2']);
  t.mock.timers.reset();
  await sub.close();
});

test('in place (RESP3): one connection, no switch at a change', async (t) => {
  const { cf, write } = setup(t, 60_000);
  const log = [];
  const sub = await new Subscriber(cf, fakeDriver(cf, log, { inPlace: true })).start();
  write('two');
  cf.reload();
  await sub._chain;
  assert.deepEqual(log, ['open 1', 'subscribe 1']);
  assert.equal(sub.switches, 0);
  await sub.close();
});

test('ioredis: no AUTH on a RESP2 subscribed connection, AUTH on RESP3', async (t) => {
  const { cf, write } = setup(t, 60_000);
  for (const protocol of [2, 3]) {
    const client = new EventEmitter();
    client.options = {};
    client.status = 'ready';
    client.condition = { subscriber: { channels: ['c'] }, protocol };
    const auths = [];
    client.auth = async (...args) => { auths.push(args); return 'OK'; };
    const creds = attachIoredis(client, cf);
    write(`p${protocol}`);
    cf.reload();
    assert.equal(client.options.password, `p${protocol}`, 'the next connect uses it');
    assert.equal(auths.length, protocol === 3 ? 1 : 0, `protocol ${protocol}`);
    creds.close();
  }
});

test('the ES module exports the same helpers', async () => {
  const m = await esm;
  assert.equal(m.blockingCommand, blockingCommand);
  assert.equal(m.Subscriber, Subscriber);
  assert.equal(typeof m.nodeRedisSubscriber, 'function');
  assert.equal(typeof m.ioredisSubscriber, 'function');
});

test('ioredis: a change during the connect is sent as AUTH once ready', async (t) => {
  const { cf, write } = setup(t, 60_000);
  const client = new EventEmitter();
  client.options = {};
  client.status = 'connecting';
  const auths = [];
  client.auth = async (...args) => { auths.push(args); return 'OK'; };
  const creds = attachIoredis(client, cf);
  // ioredis copies the options when the connect starts
  client.condition = { auth: [client.options.username, client.options.password] };
  write('two');
  cf.reload();
  assert.equal(auths.length, 0, 'not ready: nothing sent yet');
  client.status = 'ready';
  client.emit('ready');
  assert.deepEqual(auths, [['app', 'two']]);
  client.condition = { auth: ['app', 'two'] };
  client.emit('ready'); // a reconnect with the current credential: nothing to send
  assert.equal(auths.length, 1);
  creds.close();
});

class FakeIoredis extends EventEmitter {
  static made = [];

  constructor(options) {
    super();
    this.options = { protocol: 3, ...options }; // ioredis 6's default
    this.status = 'wait';
    this.log = [];
    FakeIoredis.made.push(this);
  }

  async connect() {
    this.condition = { auth: [this.options.username, this.options.password],
      subscriber: false, protocol: this.options.protocol };
    this.status = 'ready';
    this.emit('ready');
  }

  async subscribe(...ch) { this.log.push(['subscribe', ...ch]); this.condition.subscriber = true; }

  async unsubscribe() { this.log.push(['unsubscribe']); }

  async auth(...args) { this.log.push(['auth', ...args]); }

  disconnect() { this.status = 'end'; this.log.push(['disconnect']); }
}

test('ioredisSubscriber: in place on RESP3, make-before-break on RESP2', async (t) => {
  const { ioredisSubscriber } = require('..');
  const { cf, write } = setup(t, 60_000);
  for (const protocol of [3, 2]) {
    FakeIoredis.made = [];
    const got = [];
    const sub = await ioredisSubscriber(FakeIoredis, cf, { protocol, port: 1 },
      { channels: ['ev'], onMessage: (m, c) => got.push(`${c}:${m}`) });
    assert.equal(sub.inPlace, protocol === 3);
    const first = FakeIoredis.made[0];
    first.emit('message', 'ev', '1');
    write(`p${protocol}`);
    cf.reload();
    await sub._chain;
    if (protocol === 3) {
      assert.equal(FakeIoredis.made.length, 1);
      assert.deepEqual(first.log.at(-1), ['auth', 'app', 'p3'], 'AUTH in place');
    } else {
      assert.equal(FakeIoredis.made.length, 2);
      const second = FakeIoredis.made[1];
      assert.equal(second.options.password, 'p2');
      assert.deepEqual(second.log, [['subscribe', 'ev']]);
      assert.deepEqual(first.log, [['subscribe', 'ev'], ['unsubscribe'], ['disconnect']]);
      second.emit('message', 'ev', '2');
      assert.equal(sub.switches, 1);
    }
    assert.deepEqual(got, protocol === 3 ? ['ev:1'] : ['ev:1', 'ev:2']);
    await sub.close();
  }
});

test('nodeRedisSubscriber: RESP: 3 in place, RESP 2 makes before it breaks', async (t) => {
  const { nodeRedisSubscriber } = require('..');
  const { cf, write } = setup(t, 60_000);
  for (const RESP of [3, 2]) {
    const made = [];
    const createClient = (options) => {
      const c = new EventEmitter();
      c.log = [];
      c.isOpen = false;
      c.connect = async () => {
        const [cred] = await options.credentialsProvider.subscribe({
          onNext: (x) => c.log.push(['auth', x.password]), onError: () => {},
        });
        c.log.push(['hello', cred.password]);
        c.isOpen = true;
      };
      c.subscribe = async (ch, fn) => { c.log.push(['subscribe', ...ch]); c.fn = fn; };
      c.unsubscribe = async () => { c.log.push(['unsubscribe']); };
      c.close = async () => { c.isOpen = false; c.log.push(['close']); };
      made.push(c);
      return c;
    };
    const sub = await nodeRedisSubscriber(createClient, cf, { RESP }, { channels: ['ev'],
      onMessage: () => {} });
    assert.equal(sub.inPlace, RESP === 3);
    write(`r${RESP}`);
    cf.reload();
    await sub._chain;
    if (RESP === 3) {
      assert.equal(made.length, 1);
      assert.deepEqual(made[0].log.at(-1), ['auth', 'r3']);
    } else {
      assert.equal(made.length, 2);
      assert.deepEqual(made[1].log, [['hello', 'r2'], ['subscribe', 'ev']]);
      assert.deepEqual(made[0].log.slice(-2), [['unsubscribe'], ['close']]);
    }
    await sub.close();
  }
});

test('ioredisSubscriber (RESP2): a change during the first SUBSCRIBE sends no AUTH behind '
  + 'it and switches', async (t) => {
  const { ioredisSubscriber } = require('..');
  const { cf, write } = setup(t, 8_000);
  FakeIoredis.made = [];
  class SlowConfirm extends FakeIoredis {
    async subscribe(...ch) {
      this.log.push(['subscribe', ...ch]);
      if (FakeIoredis.made.length === 1) { // published before Redis confirmed
        write('two', 12_000);
        cf.reload();
      }
      this.condition.subscriber = true; // ioredis: set at the confirmation
    }
  }
  const errors = [];
  const sub = await ioredisSubscriber(SlowConfirm, cf, { protocol: 2, port: 1 },
    { channels: ['ev'], onMessage: () => {}, onError: (e) => errors.push(e) });
  await sub._chain;
  const [first, second] = FakeIoredis.made;
  assert.deepEqual(first.log, [['subscribe', 'ev'], ['unsubscribe'], ['disconnect']],
    'no AUTH on the first connection (Redis refuses it there)');
  assert.equal(second.options.password, 'two');
  assert.equal(sub.switches, 1);
  assert.deepEqual(errors, []);
  await sub.close();
});
