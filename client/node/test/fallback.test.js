'use strict';
// The order credentials are tried in (lib/fallback.js), which both adapters use, and the
// node-redis provider's side of node-redis' streaming-credentials-provider contract.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { CredentialFile, nodeRedisCredentialsProvider, isAuthRefusal } = require('..');
const { Fallback, RELOADED } = require('../lib/fallback');

function setup(t, file) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rc-node-fb-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const write = (doc) => {
    fs.writeFileSync(path.join(dir, '.tmp'), JSON.stringify({ format: 1, ...doc }));
    fs.renameSync(path.join(dir, '.tmp'), path.join(dir, 'cache.json'));
  };
  write(file);
  const cf = new CredentialFile('cache', { runtimeDir: dir, watch: false });
  return { cf, write };
}

const cred = (password, extra = {}) => ({ username: 'app', password, version: password,
  ...extra });

test('current, then previous, then a re-read that brought a newer file, then nothing', (t) => {
  const { cf, write } = setup(t, { ...cred('new'), previous: cred('old') });
  const fb = new Fallback(cf);
  assert.equal(fb.reset().password, 'new');
  assert.equal(fb.next().password, 'old');
  write({ ...cred('newer'), previous: cred('new') });
  assert.equal(fb.next(), RELOADED);
  assert.equal(cf.get().current.password, 'newer');
  assert.equal(fb.next(), null);
});

test('without a newer file the re-read gives nothing more', (t) => {
  const { cf } = setup(t, { ...cred('new'), previous: cred('old') });
  const fb = new Fallback(cf);
  fb.reset();
  assert.equal(fb.next().password, 'old');
  assert.equal(fb.next(), null);
});

test('an expired previous or one past previous_valid_until is not tried', (t) => {
  for (const doc of [
    { ...cred('new'), previous: cred('old', { expires_at: '2000-01-01T00:00:00Z' }) },
    { ...cred('new'), previous: cred('old'), previous_valid_until: '2000-01-01T00:00:00Z' },
    { ...cred('new'), previous: null },
  ]) {
    const { cf } = setup(t, doc);
    const fb = new Fallback(cf);
    fb.reset();
    assert.equal(fb.next(), null, JSON.stringify(doc));
  }
});

test('a new connection uses previous while this very current was refused', (t) => {
  const { cf, write } = setup(t, { ...cred('new'), previous: cred('old') });
  const fb = new Fallback(cf);
  assert.equal(fb.forConnect().password, 'new');
  assert.equal(fb.next().password, 'old'); // `new` refused
  assert.equal(fb.forConnect().password, 'old');
  write({ ...cred('newer'), previous: cred('new') });
  cf.reload();
  assert.equal(fb.forConnect().password, 'newer');
});

test('the node-redis provider: subscribe, re-AUTH on change, fallback, newest listener only',
  async (t) => {
    const { cf, write } = setup(t, { ...cred('one'), username: null, previous: null });
    const p = nodeRedisCredentialsProvider(cf);
    assert.equal(p.type, 'streaming-credentials-provider');
    const sent = [];
    const listener = (tag) => ({ onNext: (c) => sent.push([tag, c]), onError: () => {} });
    const [first, sub1] = await p.subscribe(listener('a'));
    assert.deepEqual(first, { password: 'one' });
    const [, sub2] = await p.subscribe(listener('b')); // a reconnect
    write({ ...cred('two'), previous: cred('one') });
    cf.reload();
    assert.deepEqual(sent, [['b', { username: 'app', password: 'two' }]]);
    p.onReAuthenticationError(new Error('WRONGPASS invalid username-password pair'));
    assert.deepEqual(sent[1], ['b', { username: 'app', password: 'one' }]);
    const errors = [];
    p.on('error', (e) => errors.push(e));
    p.onReAuthenticationError(new Error('WRONGPASS invalid username-password pair'));
    assert.equal(errors.length, 1);
    p.onReAuthenticationError(new Error('Socket closed unexpectedly'));
    assert.equal(errors.length, 2);
    assert.equal(sent.length, 2);
    sub1.dispose(); // a stale subscription does not unhook the live one
    write({ ...cred('three'), previous: cred('two') });
    cf.reload();
    assert.equal(sent.length, 3);
    sub2.dispose();
    write({ ...cred('four'), previous: cred('three') });
    cf.reload();
    assert.equal(sent.length, 3);
    // an AUTH that failed because its connection was closed meanwhile is nobody's error
    p.onReAuthenticationError(new Error('Socket closed unexpectedly'));
    assert.equal(errors.length, 2);
    p.close();
  });

test('isAuthRefusal knows Redis refusals and nothing else', () => {
  for (const m of ['WRONGPASS invalid username-password pair or user is disabled.',
    'ERR invalid password', 'NOAUTH Authentication required.']) {
    assert.ok(isAuthRefusal(new Error(m)), m);
  }
  for (const m of ['Socket closed unexpectedly', 'ERR unknown command', 'READONLY']) {
    assert.ok(!isAuthRefusal(new Error(m)), m);
  }
});
