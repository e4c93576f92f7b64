'use strict';
// node-redis (v5, v6): a `streaming-credentials-provider` fed by a CredentialFile.
//
// Contract:
// - One provider per client (createClient). node-redis subscribes once per connection
//   and again at each reconnect without disposing the old subscription: the provider
//   keeps only the newest listener, which is the client's live connection.
// - At each change of the file, the connection re-AUTHs in place (listener.onNext).
//   When Redis refuses it (onReAuthenticationError), `previous` is sent, then the file is
//   read again; when all are refused, options.onError hears the error.
// - A connection (or reconnection) authenticates with `current`. With attach(client),
//   a refusal at connect makes the next attempt (node-redis reconnects by itself) use
//   `previous`, then a re-read `current`.
// - node-redis does not re-AUTH a RESP2 connection that is subscribed (pub/sub): use
//   RESP: 3 for subscribers (docs/clients.md).
// - The provider emits 'reauth' (credential) right after it asked the client to re-AUTH:
//   a command sent from that event is queued behind the AUTH.
const { EventEmitter } = require('node:events');
const { Fallback, isAuthRefusal, RELOADED } = require('./fallback');

class NodeRedisCredentialsProvider extends EventEmitter {
  /**
   * @param {import('./watch').CredentialFile} credentialFile
   * @param {{onError?: (err: Error) => void}} [options]
   */
  constructor(credentialFile, { onError } = {}) {
    super();
    this.type = 'streaming-credentials-provider';
    this.credentialFile = credentialFile;
    this.onError = onError || null;
    this._listener = null;
    this._fallback = new Fallback(credentialFile);
    this._connectRefused = false;
    this._onChange = () => this._send(this._fallback.reset());
    credentialFile.on('change', this._onChange);
    // node-redis calls these as plain functions
    this.subscribe = this.subscribe.bind(this);
    this.onReAuthenticationError = this.onReAuthenticationError.bind(this);
  }

  /** node-redis: called at each (re)connect; returns [credentials, disposable]. */
  async subscribe(listener) {
    this._listener = listener;
    let cred = null;
    if (this._connectRefused) {
      this._connectRefused = false;
      cred = this._fallback.next();
      if (cred === RELOADED) cred = this._fallback.sent;
    }
    if (!cred) cred = this._fallback.forConnect();
    const dispose = () => {
      if (this._listener === listener) this._listener = null;
    };
    return [cred.basicAuth(), { dispose }];
  }

  /** node-redis: a re-AUTH failed (or the stream failed). */
  onReAuthenticationError(err) {
    if (!this._listener) return; // the connection was closed under the AUTH
    this._fallback.afterReauthError(err, (c) => this._send(c), (e) => this._report(e));
  }

  /** Makes a refusal at connect (or reconnect) fall back to `previous` at the next try,
   * and a successful connect start the order over. Returns the client. */
  attach(client) {
    client.on('error', (err) => {
      if (isAuthRefusal(err) && !client.isReady) this._connectRefused = true;
    });
    client.on('ready', () => {
      this._connectRefused = false;
    });
    return client;
  }

  /** The credential last given to the connection (at connect or re-AUTH). */
  get credential() {
    return this._fallback.sent;
  }

  /** Stops following the file (the client keeps its connection and credential). */
  close() {
    this.credentialFile.off('change', this._onChange);
    this._listener = null;
  }

  _send(cred) {
    const l = this._listener;
    if (!l) return;
    l.onNext(cred.basicAuth());
    this.emit('reauth', cred);
  }

  _report(err) {
    if (this.onError) this.onError(err);
    else if (this.listenerCount('error') > 0) this.emit('error', err);
  }
}

/** A streaming credentials provider for one node-redis client. */
function nodeRedisCredentialsProvider(credentialFile, options) {
  return new NodeRedisCredentialsProvider(credentialFile, options);
}

module.exports = { NodeRedisCredentialsProvider, nodeRedisCredentialsProvider };
