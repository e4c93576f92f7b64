'use strict';
// The order in which credentials are tried, shared by the node-redis and ioredis
// adapters (docs/file-format.md, "Using previous"): `current`; when Redis refuses it,
// `previous` (unless absent, expired, or past previous_valid_until); when that is refused
// too, the file is read again and a newer `current`, if one arrived, is tried once. Then
// the refusal is the application's.

/** True for the errors Redis answers when it refuses a credential. */
function isAuthRefusal(err) {
  const m = err && typeof err.message === 'string' ? err.message : String(err);
  return /WRONGPASS|invalid password|invalid username-password|NOAUTH|NOPERM.*AUTH/i.test(m);
}

class Fallback {
  /** @param {import('./watch').CredentialFile} cf */
  constructor(cf) {
    this.cf = cf;
    this.reset();
  }

  /** The credential to use now: the current one, and the chain starts over. */
  reset() {
    this.step = 0;
    this.refused = null;
    this.sent = this.cf.get().current;
    return this.sent;
  }

  /** The credential for a new connection: `current`, or `previous` while Redis refused
   * this very `current` (until the file changes). */
  forConnect() {
    const snap = this.cf.get();
    const prev = snap.usablePrevious();
    if (this.refused && this.refused.equals(snap.current) && prev) {
      this.sent = prev;
      return prev;
    }
    const refused = this.refused;
    this.reset();
    this.refused = refused;
    return this.sent;
  }

  /** After `this.sent` was refused: the next credential to try; RELOADED when reading the
   * file again brought a newer one (the CredentialFile's 'change' listeners, i.e. the
   * adapters, start over with it); null when every candidate was refused. */
  next() {
    const snap = this.cf.get();
    if (this.step === 0) {
      this.step = 1;
      if (this.sent.equals(snap.current)) this.refused = this.sent;
      const prev = snap.usablePrevious();
      if (prev && !prev.equals(this.sent)) {
        this.sent = prev;
        return prev;
      }
    }
    if (this.step === 1) {
      this.step = 2;
      if (this.cf.reload()) return RELOADED;
    }
    return null;
  }
}

const RELOADED = Symbol('reloaded');

module.exports = { Fallback, isAuthRefusal, RELOADED };
