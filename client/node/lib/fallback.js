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

  /** After an open connection's re-AUTH failed with err: sends the next candidate with
   * send(credential), or hands err to report(err) when it was not a refusal or every
   * candidate was refused. Nothing when a re-read brought a newer file (the change
   * listeners send it). */
  afterReauthError(err, send, report) {
    if (!isAuthRefusal(err)) {
      report(err);
      return;
    }
    const next = this.next();
    if (next === RELOADED) return;
    if (next) send(next);
    else report(err);
  }
}

const RELOADED = Symbol('reloaded');

module.exports = { Fallback, isAuthRefusal, RELOADED };
