'use strict';
// The parser against the shared vectors of the published file (tests/vectors).
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { parseCredentialFile, CredentialFileError } = require('..');

const DIR = process.env.REDIS_CREDS_VECTORS ||
  path.join(__dirname, '..', '..', '..', 'tests', 'vectors');
const { vectors } = JSON.parse(fs.readFileSync(path.join(DIR, 'vectors.json'), 'utf8'));

function seconds(ms) {
  return ms === null ? null : Math.floor(ms / 1000);
}

function plain(c) {
  return c === null ? null : { username: c.username, password: c.password,
    version: c.version, expires_at: seconds(c.expiresAt) };
}

test('there are vectors of both kinds', () => {
  assert.ok(vectors.filter((v) => v.result === 'ok').length >= 20);
  assert.ok(vectors.filter((v) => v.result === 'reject').length >= 40);
});

for (const v of vectors) {
  test(`vector ${v.result} ${v.id}: ${v.description}`, () => {
    const bytes = fs.readFileSync(path.join(DIR, v.file));
    if (v.result === 'reject') {
      assert.throws(() => parseCredentialFile(bytes, v.name, 'f.json'), (e) => {
        assert.ok(e instanceof CredentialFileError, e);
        assert.equal(e.code, v.error);
        for (const secret of ['s3cr3t', 'old']) assert.ok(!e.message.includes(secret));
        return true;
      });
      return;
    }
    const s = parseCredentialFile(bytes, v.name);
    assert.deepEqual(plain(s.current), v.current);
    assert.deepEqual(plain(s.previous), v.previous);
    if ('previous_valid_until' in v) {
      assert.equal(seconds(s.previousValidUntil), v.previous_valid_until);
    }
  });
}
