'use strict';
// ioredis (v5, v6): keeps a client on the published credential.
//
// Contract:
// - attachIoredis(client, credentialFile) sets client.options.username/password to
//   `current` (ioredis reads them at each connect and reconnect), and at each change of
//   the file updates them and sends AUTH on the open connection (when it is ready).
// - When Redis refuses a re-AUTH, `previous` is sent, then the file is read again; when
//   all are refused, options.onError (or the handle's 'error' event) hears the error.
// - When Redis refuses the credential at connect, ioredis reports it and reconnects: the
//   handle has already put `previous` (then a re-read `current`) into the options for
//   that attempt. A successful connect starts the order over.
// - ioredis refuses commands other than (P|S)SUBSCRIBE, PING, QUIT... on a RESP2
//   subscriber connection: there the handle only updates the options (the next reconnect
//   uses them), and ioredisSubscriber (longlived.js) makes before it breaks; on RESP3
//   (ioredis 6's default, protocol: 3) it re-AUTHs in place. ioredis knows the
//   connection is subscribed only once Redis confirmed: ioredisSubscriber sets the
//   handle's `subscriber` before its first SUBSCRIBE, so that no AUTH goes out after
//   it (Redis would refuse it).
// - A change that arrives while the client connects is sent as AUTH once it is ready
//   (ioredis authenticates with the options of the moment the connect started).
// - The handle emits 'reauth' ({credential, ok, error, ms}) after each AUTH reply.
const { EventEmitter } = require('node:events');
const { Fallback, isAuthRefusal, RELOADED } = require('./fallback');

function setOptions(client, cred) {
  client.options.username = cred.username === null ? undefined : cred.username;
  client.options.password = cred.password;
}

/** A RESP2 connection in subscribed mode, where ioredis (and Redis) refuse AUTH;
 * `subscriber`: the connection is for a subscription, so from its first SUBSCRIBE on,
 * before ioredis has the reply (condition.subscriber is set only then). */
function resp2Subscriber(client, subscriber) {
  const c = client.condition;
  const protocol = c && c.protocol !== undefined ? c.protocol : client.options.protocol;
  return (subscriber || Boolean(c && c.subscriber)) && protocol !== 3;
}

/** Whether ioredis' condition.auth (password, or [username, password]) is cred. */
function sameAuth(auth, cred) {
  const want = authArgs(cred);
  const got = Array.isArray(auth) ? auth : [auth];
  return got.length === want.length && got.every((v, i) => v === want[i]);
}

function authArgs(cred) {
  return cred.username === null ? [cred.password] : [cred.username, cred.password];
}

class IoredisCredentials extends EventEmitter {
  constructor(client, credentialFile, { onError } = {}) {
    super();
    this.client = client;
    this.subscriber = false; // see resp2Subscriber()
    this.credentialFile = credentialFile;
    this.onError = onError || null;
    this._fallback = new Fallback(credentialFile);
    this._seq = 0;
    setOptions(client, this._fallback.reset());
    this._onChange = () => this._reauth(this._fallback.reset());
    this._onClientError = (err) => this._connectError(err);
    this._onReady = () => {
      this._connectFailed = false;
      // a change that arrived while connecting: the connection sent the credential of the
      // moment it started (condition.auth), so it re-AUTHs with the newer one now
      if (!sameAuth(client.condition && client.condition.auth, this._fallback.sent)) {
        this._reauth(this._fallback.sent);
      }
    };
    credentialFile.on('change', this._onChange);
    client.on('error', this._onClientError);
    client.on('ready', this._onReady);
  }

  /** The credential last given to the connection (at connect or re-AUTH). */
  get credential() {
    return this._fallback.sent;
  }

  /** Stops following the file. */
  close() {
    this.credentialFile.off('change', this._onChange);
    this.client.off('error', this._onClientError);
    this.client.off('ready', this._onReady);
  }

  _reauth(cred) {
    setOptions(this.client, cred);
    if (this.client.status !== 'ready') return; // the next connect uses the options
    // Redis refuses AUTH there (ioredis too, once subscribed): see longlived.js
    if (resp2Subscriber(this.client, this.subscriber)) return;
    const seq = ++this._seq;
    const t0 = performance.now();
    this.client.auth(...authArgs(cred)).then(() => {
      this.emit('reauth', { credential: cred, ok: true, error: null, ms: performance.now() - t0 });
    }, (err) => {
      this.emit('reauth', { credential: cred, ok: false, error: err, ms: performance.now() - t0 });
      if (seq !== this._seq) return; // a newer change took over
      // the connection closed under the AUTH: the next connect uses the options
      if (!isAuthRefusal(err) && this.client.status !== 'ready') return;
      this._fallback.afterReauthError(err, (c) => this._reauth(c), (e) => this._report(e));
    });
  }

  _connectError(err) {
    if (!isAuthRefusal(err) || this.client.status === 'ready') return;
    const next = this._fallback.next();
    if (next === RELOADED) return; // the change handler set the options
    setOptions(this.client, next || this._fallback.reset());
    if (!next) this._report(err);
  }

  _report(err) {
    if (this.onError) this.onError(err);
    else if (this.listenerCount('error') > 0) this.emit('error', err);
  }
}

/** Keeps an ioredis client (Redis, not Cluster) on the credential; returns the handle. */
function attachIoredis(client, credentialFile, options) {
  return new IoredisCredentials(client, credentialFile, options);
}

/** new Redis({...options, lazyConnect: true}) with the credential attached, then connect().
 * Returns {client, credentials}. `Redis` is the ioredis class (this package does not
 * import ioredis itself). */
function createIoredis(Redis, credentialFile, options = {}) {
  const client = new Redis({ ...options, lazyConnect: true });
  const credentials = attachIoredis(client, credentialFile, options);
  if (!options.lazyConnect) client.connect().catch(() => {});
  return { client, credentials };
}

module.exports = { IoredisCredentials, attachIoredis, createIoredis };
