'use strict';
// CredentialFile: the directory watch, the last good snapshot, previous_valid_until.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const util = require('node:util');
const { CredentialFile, CredentialUnavailable, parseCredentialFile } = require('..');

function tmpdir(t) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'rc-node-'));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

let seq = 0;
/** Publishes like the agent: a hidden temporary file renamed over <name>.json. */
function publish(dir, text, name = 'cache') {
  const tmp = path.join(dir, `.${name}.json.tmp-${seq++}`);
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, path.join(dir, `${name}.json`));
}

function doc(password, previous = null, extra = {}) {
  return `${JSON.stringify({
    format: 1, name: 'cache', username: 'app', password, version: `v${seq++}`,
    expires_at: null,
    previous: previous && { username: 'app', password: previous, version: `p${seq++}`,
      expires_at: null },
    ...extra,
  })}\n`;
}

function nextEvent(emitter, event, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no '${event}' in ${timeoutMs} ms`)),
      timeoutMs);
    emitter.once(event, (...args) => {
      clearTimeout(t);
      resolve(args);
    });
  });
}

test('a rename over the file is seen through the directory watch, not the poll', async (t) => {
  const dir = tmpdir(t);
  publish(dir, doc('one'));
  const cf = new CredentialFile('cache', { runtimeDir: dir, pollIntervalMs: 3600000 });
  t.after(() => cf.close());
  assert.equal(cf.get().current.password, 'one');
  assert.equal(cf.generation, 1);
  for (const pw of ['two', 'three', 'four']) {
    const changed = nextEvent(cf, 'change');
    publish(dir, doc(pw, 'x'));
    const [snap] = await changed;
    assert.equal(snap.current.password, pw);
    assert.equal(snap.previous.password, 'x');
    assert.equal(cf.get(), snap);
  }
  assert.equal(cf.generation, 4);
});

test('a file published after the start is picked up; get() throws until then', async (t) => {
  const dir = tmpdir(t);
  const cf = new CredentialFile('cache', { runtimeDir: dir, pollIntervalMs: 3600000 });
  t.after(() => cf.close());
  assert.throws(() => cf.get(), (e) => e instanceof CredentialUnavailable && e.code === 'ENOENT');
  const ready = cf.ready(5000);
  publish(dir, doc('late'));
  assert.equal((await ready).current.password, 'late');
});

test('a malformed file keeps the last good credential and is reported once', async (t) => {
  const dir = tmpdir(t);
  publish(dir, doc('good'));
  const cf = new CredentialFile('cache', { runtimeDir: dir, pollIntervalMs: 3600000 });
  t.after(() => cf.close());
  const errors = [];
  cf.on('error', (e, kept) => errors.push([e, kept]));
  const errored = nextEvent(cf, 'error');
  publish(dir, '{"format": 1, "username": "app", "password": "torn-secr');
  await errored;
  assert.equal(cf.get().current.password, 'good');
  assert.equal(cf.lastError.code, 'EBADMSG');
  assert.ok(!cf.lastError.message.includes('torn-secr'));
  cf.reload();
  assert.equal(errors.length, 1);
  assert.equal(errors[0][1].current.password, 'good');
  const changed = nextEvent(cf, 'change');
  publish(dir, doc('fixed'));
  await changed;
  assert.equal(cf.lastError, null);
  assert.equal(cf.get().current.password, 'fixed');
});

test('an unknown format is EPROTONOSUPPORT and a file of another name is ignored', async (t) => {
  const dir = tmpdir(t);
  publish(dir, doc('good'));
  const cf = new CredentialFile('cache', { runtimeDir: dir, pollIntervalMs: 3600000 });
  t.after(() => cf.close());
  publish(dir, doc('other'), 'other');
  const errored = nextEvent(cf, 'error');
  publish(dir, doc('two').replace('"format":1', '"format":2'));
  const [e] = await errored;
  assert.equal(e.code, 'EPROTONOSUPPORT');
  assert.equal(cf.get().current.password, 'good');
});

test('the poll re-creates the watch when the directory is removed and created again',
  async (t) => {
    const dir = tmpdir(t);
    const run = path.join(dir, 'run');
    fs.mkdirSync(run);
    publish(run, doc('one'));
    const cf = new CredentialFile('cache', { runtimeDir: run, pollIntervalMs: 20 });
    t.after(() => cf.close());
    fs.rmSync(run, { recursive: true });
    fs.mkdirSync(run);
    await new Promise((r) => setTimeout(r, 100)); // several polls: the new directory's watch
    assert.equal(cf.get().current.password, 'one');
    const changed = nextEvent(cf, 'change');
    publish(run, doc('two'));
    assert.equal((await changed)[0].current.password, 'two');
  });

test('usablePrevious honours previous_valid_until and the expiry of previous', () => {
  const at = (s) => Date.parse(s);
  const s = parseCredentialFile(Buffer.from(doc('new', 'old',
    { previous_valid_until: '2026-11-22T11:30:00Z' })), 'cache');
  assert.equal(s.previousValidUntil, at('2026-11-22T11:30:00Z'));
  assert.equal(s.usablePrevious(at('2026-11-22T11:29:59Z')).password, 'old');
  assert.equal(s.usablePrevious(at('2026-11-22T11:30:00Z')), null);
  const e = parseCredentialFile(Buffer.from(doc('new', null, {
    previous: { username: null, password: 'old', version: 'v0',
      expires_at: '2026-11-22T10:00:00.500Z' },
  })), 'cache');
  assert.equal(e.previous.username, null);
  assert.deepEqual(e.previous.basicAuth(), { password: 'old' });
  assert.equal(e.usablePrevious(at('2026-11-22T10:00:00.499Z')).version, 'v0');
  assert.equal(e.usablePrevious(at('2026-11-22T10:00:00.500Z')), null);
  assert.equal(s.usablePrevious(at('2026-11-22T11:00:00Z')).expired(), false);
});

test('a password never shows in inspect, JSON or the enumerable keys', () => {
  const s = parseCredentialFile(Buffer.from(doc('hunter2', 'hunter1')), 'cache');
  for (const text of [util.inspect(s, { depth: 5 }), JSON.stringify(s),
    Object.keys(s.current).join()]) {
    assert.ok(!text.includes('hunter'), text);
  }
  assert.equal(s.current.password, 'hunter2');
});

test('an invalid credential name is refused', () => {
  for (const bad of ['', '.hidden', 'a/b', 'x'.repeat(65), 7]) {
    assert.throws(() => new CredentialFile(bad, { watch: false }), TypeError);
  }
});

test('both entry points export the same objects', async () => {
  const esm = await import('../index.mjs');
  const cjs = require('..');
  assert.equal(esm.CredentialFile, cjs.CredentialFile);
  assert.equal(esm.nodeRedisCredentialsProvider, cjs.nodeRedisCredentialsProvider);
  assert.equal(esm.default, cjs);
});
