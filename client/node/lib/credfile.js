'use strict';
// Reading and following <runtime_dir>/<name>.json, the file the redis-creds agent
// publishes (docs/file-format.md).
//
// Contract:
// - parseCredentialFile(bytes, name) turns the file's bytes into a Snapshot or throws a
//   CredentialFileError. It is as strict as the agent's C client (client/redis_creds.c)
//   and passes the shared vectors in tests/vectors. No message quotes the file.
// - Credential and Snapshot are immutable; previous_valid_until is honoured by
//   Snapshot.usablePrevious().
// - A password is never put in an error, a log line or the result of util.inspect.
const { parse: parseJson, JsonError, JsonNumber } = require('./json');

const DEFAULT_RUNTIME_DIR = '/run/redis-creds';
const MAX_FILE = 64 * 1024;
const NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const RFC3339_RE =
  /^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$/;
const INSPECT = Symbol.for('nodejs.util.inspect.custom');

class CredentialError extends Error {}

/** The file could not be used. `code`: EBADMSG (malformed), EPROTONOSUPPORT (a format
 * this library does not know), EFBIG (over 64 KiB), or the errno code of the read. */
class CredentialFileError extends CredentialError {
  constructor(file, message, code = 'EBADMSG') {
    super(`${file}: ${message}`);
    this.path = file;
    this.code = code;
  }
}

function defaultRuntimeDir() {
  return process.env.REDIS_CREDS_RUNTIME_DIR || DEFAULT_RUNTIME_DIR;
}

/** RFC 3339 date-time -> milliseconds since the epoch (fraction kept to the ms), with
 * the C client's checks (month 1-12, day 1-31, hour <= 23, minute <= 59, second <= 60,
 * offset hour <= 23, minute <= 59). Out-of-month days roll over, as timegm does. */
function parseTime(value, file, what) {
  if (value === null || value === undefined) return null;
  const m = typeof value === 'string' ? RFC3339_RE.exec(value) : null;
  const bad = () => new CredentialFileError(file, `${what} is not an RFC 3339 time`);
  if (!m) throw bad();
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number);
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) throw bad();
  let offset = 0;
  const tz = m[8];
  if (tz !== 'Z' && tz !== 'z') {
    const oh = Number(tz.slice(1, 3));
    const om = Number(tz.slice(4, 6));
    if (oh > 23 || om > 59) throw bad();
    offset = (tz[0] === '-' ? -1 : 1) * (oh * 3600 + om * 60) * 1000;
  }
  const t = new Date(0);
  t.setUTCFullYear(y, mo - 1, d);
  t.setUTCHours(h, mi, s, 0);
  // the first three digits, as text: Number('0.99999999999999999') is 1, which would
  // round a time up into the next second (the C client ignores the fraction)
  const frac = m[7] ? Number(m[7].slice(1, 4).padEnd(3, '0')) : 0;
  return t.getTime() + frac - offset;
}

/** One credential. username null means Redis' `default` user (AUTH <password>). */
class Credential {
  constructor(username, password, version, expiresAt) {
    this.username = username;
    Object.defineProperty(this, 'password', { value: password, enumerable: false });
    this.version = version;
    this.expiresAt = expiresAt; // ms since the epoch, or null
    Object.freeze(this);
  }

  /** True once expires_at has passed. */
  expired(now = Date.now()) {
    return this.expiresAt !== null && now >= this.expiresAt;
  }

  /** { username, password } for node-redis and ioredis; no username for `default`. */
  basicAuth() {
    return this.username === null ? { password: this.password }
      : { username: this.username, password: this.password };
  }

  equals(o) {
    return o instanceof Credential && o.username === this.username &&
      o.password === this.password && o.version === this.version &&
      o.expiresAt === this.expiresAt;
  }

  toJSON() {
    return { username: this.username, password: '<hidden>', version: this.version,
      expiresAt: this.expiresAt };
  }

  [INSPECT]() {
    return `Credential { username: ${JSON.stringify(this.username)}, password: <hidden>, ` +
      `version: ${JSON.stringify(this.version)}, expiresAt: ${this.expiresAt} }`;
  }
}

/** An immutable view of one version of the file. */
class Snapshot {
  constructor(name, current, previous, previousValidUntil, publishedAt, generation) {
    this.name = name;
    this.current = current;
    this.previous = previous; // Credential or null, as published
    this.previousValidUntil = previousValidUntil; // ms since the epoch, or null
    this.publishedAt = publishedAt; // the string as published, or null
    this.generation = generation;
    Object.freeze(this);
  }

  /** `previous`, unless there is none or its `previous_valid_until` (or its own
   * expires_at) has passed: the credential worth trying when `current` is refused. */
  usablePrevious(now = Date.now()) {
    const p = this.previous;
    if (p === null || p.expired(now)) return null;
    if (this.previousValidUntil !== null && now >= this.previousValidUntil) return null;
    return p;
  }

  sameAs(o) {
    const eq = (a, b) => (a === null ? b === null : a.equals(b));
    return o instanceof Snapshot && eq(this.current, o.current) &&
      eq(this.previous, o.previous) && this.previousValidUntil === o.previousValidUntil;
  }

  withGeneration(generation) {
    return new Snapshot(this.name, this.current, this.previous, this.previousValidUntil,
      this.publishedAt, generation);
  }
}

function str(obj, key, file, what, { required = false, nul = false } = {}) {
  const v = obj[key];
  if (v === undefined || v === null) {
    if (required) throw new CredentialFileError(file, `${what}.${key} is missing`);
    return null;
  }
  if (typeof v !== 'string' || (!nul && v.includes('\0'))) {
    throw new CredentialFileError(file, `${what}.${key} is not a valid string`);
  }
  return v;
}

function credential(obj, file, what) {
  const username = str(obj, 'username', file, what);
  const password = str(obj, 'password', file, what, { required: true, nul: true });
  const version = str(obj, 'version', file, what, { required: true });
  if (password === '') throw new CredentialFileError(file, `${what}.password is empty`);
  const expiresAt = parseTime(obj.expires_at, file, `${what}.expires_at`);
  return new Credential(username === '' ? null : username, password, version, expiresAt);
}

function isObject(v) {
  return v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === null;
}

/** The bytes of a credential file -> Snapshot (generation 0). Throws CredentialFileError. */
function parseCredentialFile(bytes, name, file = '<credential file>') {
  if (bytes.length > MAX_FILE) throw new CredentialFileError(file, 'larger than 64 KiB', 'EFBIG');
  let doc;
  try {
    const text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
    doc = parseJson(text);
  } catch (e) {
    const why = e instanceof JsonError ? e.message : 'not UTF-8';
    throw new CredentialFileError(file, why);
  }
  if (!isObject(doc)) throw new CredentialFileError(file, 'not a JSON object');
  const fmt = doc.format;
  if (!(fmt instanceof JsonNumber) || fmt.int === null) {
    throw new CredentialFileError(file, 'no format number');
  }
  if (fmt.int !== 1n) {
    throw new CredentialFileError(file, `unknown format ${fmt.int} (this client knows 1)`,
      'EPROTONOSUPPORT');
  }
  if ('name' in doc && doc.name !== name) {
    throw new CredentialFileError(file, 'the file is for another credential');
  }
  const current = credential(doc, file, 'credential');
  const prev = doc.previous;
  if (prev !== undefined && prev !== null && !isObject(prev)) {
    throw new CredentialFileError(file, 'previous is not an object');
  }
  const previous = prev ? credential(prev, file, 'previous') : null;
  const validUntil = parseTime(doc.previous_valid_until, file, 'previous_valid_until');
  const publishedAt = typeof doc.published_at === 'string' ? doc.published_at : null;
  return new Snapshot(name, current, previous, validUntil, publishedAt, 0);
}

module.exports = {
  DEFAULT_RUNTIME_DIR, MAX_FILE, NAME_RE, CredentialError, CredentialFileError, Credential,
  Snapshot, parseCredentialFile, parseTime, defaultRuntimeDir,
};
