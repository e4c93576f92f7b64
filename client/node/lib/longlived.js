'use strict';
// Long-lived connections with expiring credentials (Entra tokens on Azure Managed Redis,
// which closes a connection whose token expired unless it sent AUTH with a newer one).
//
// Contract:
// - blockSeconds(expiresAt, want): how long one blocking call may block: at most `want`
//   seconds (null or 0: no limit of the caller's), until BLOCK_MARGIN (2 s) before the
//   credential's expiresAt (ms since the epoch; null: it does not expire), and 1 s less
//   than a command timeout; never less than MIN_BLOCK (0.1 s; 0 would mean forever).
// - blockingCommand(client, credentials, args, {timeout}): sends args plus that cap as
//   the last argument (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BZPOPMIN, BZPOPMAX), again and
//   again until a reply or the caller's timeout (seconds, 0: forever); null on timeout.
//   An AUTH written behind a blocked command waits for it: the adapter (`credentials`,
//   a NodeRedisCredentialsProvider or IoredisCredentials) sent it at the change, so it
//   runs when the capped call returns, before the old credential expires. The client
//   must be dedicated to the blocking reader (node-redis pipelines every command of a
//   client on its one connection).
// - Subscriber (nodeRedisSubscriber, ioredisSubscriber): a subscription that outlives
//   the credential. Where the client re-AUTHs a subscribed connection (RESP3: node-redis
//   RESP: 3, ioredis 6 by default) it is one connection that the adapter re-AUTHs in
//   place (`inPlace`). Otherwise (RESP2: Redis, node-redis and ioredis refuse AUTH on a
//   subscribed connection) it makes before it breaks at each change of the file:
//   subscribe on a new connection (authenticated with the new credential), wait for its
//   confirmations, then unsubscribe the old one, deliver what it still receives until
//   the unsubscribe is confirmed, and close it. Nothing is lost; messages published
//   between the two confirmations arrive twice (`switches` counts the switches).
// - A switch has a deadline: BLOCK_MARGIN before the old credential's expiresAt, when
//   the server closes the old connection. An attempt (open + subscribe) that fails is
//   tried again at once, then after 50, 100, 200 ... ms (at most 1 s), and one that hangs
//   is given up at that deadline (at least 1 s, at most 10 s) and tried again; the late
//   connection is closed when it comes. Leaving the old connection (unsubscribe, then
//   close) may take at most 1 s each and never past its expiry: then it is destroyed
//   (the new one already has every message), so a stuck old connection neither stays
//   until the server drops it nor holds up the next switch.
const { EventEmitter } = require('node:events');
const { nodeRedisCredentialsProvider } = require('./node-redis');
const { attachIoredis } = require('./ioredis');

const BLOCK_MARGIN = 2; // seconds before expiresAt by which a blocking call returns
const MIN_BLOCK = 0.1; // seconds; never ask Redis for less
const RETRY_FIRST_MS = 50; // a failed switch: at once, then after 50, 100, 200 ... ms
const RETRY_MAX_MS = 1000;
const ATTEMPT_MIN_MS = 1000; // how long one attempt at a switch may take, at the least
const ATTEMPT_MAX_MS = 10000; // and at the most (no expiry: this)
const LEAVE_MAX_MS = 1000; // unsubscribing, then closing the old connection, each

class SwitchTimeout extends Error {
  constructor(what, ms) {
    super(`subscriber switch: ${what} took over ${Math.round(ms)} ms`);
    this.code = 'ETIMEDOUT';
  }
}

/** promise, or a SwitchTimeout rejection after ms. */
function within(promise, ms, what) {
  let timer;
  const late = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new SwitchTimeout(what, ms)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** Milliseconds until BLOCK_MARGIN before cred expires (Infinity: it does not). */
function msBeforeExpiry(cred, now = Date.now()) {
  const at = cred ? cred.expiresAt : null;
  return at === null || at === undefined ? Infinity : at - now - BLOCK_MARGIN * 1000;
}

/** How long one attempt at a switch away from `cred` may take. */
function attemptMs(cred, now = Date.now()) {
  return Math.min(ATTEMPT_MAX_MS, Math.max(ATTEMPT_MIN_MS, msBeforeExpiry(cred, now)));
}

/** The pause before try number `failures` + 1 (0 after the first failure). */
function retryMs(failures) {
  return failures <= 1 ? 0 : Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** (failures - 2));
}

function blockSeconds(expiresAt, want, { margin = BLOCK_MARGIN, commandTimeout = null,
  now = Date.now() } = {}) {
  const caps = [];
  if (want) caps.push(want);
  if (expiresAt !== null && expiresAt !== undefined) caps.push((expiresAt - now) / 1000 - margin);
  if (commandTimeout) caps.push(commandTimeout - 1);
  if (caps.length === 0) return 0; // nothing expires and the caller waits forever
  return Math.max(MIN_BLOCK, Math.min(...caps));
}

/** ioredis has call(); node-redis has sendCommand(array). */
function sender(client) {
  if (typeof client.call === 'function') return (args) => client.call(...args);
  return (args) => client.sendCommand(args);
}

/** ioredis' commandTimeout (ms) in seconds, or null. */
function commandTimeoutOf(client) {
  const ms = client.options && client.options.commandTimeout;
  return typeof ms === 'number' && ms > 0 ? ms / 1000 : null;
}

async function blockingCommand(client, credentials, args, { timeout = 0,
  margin = BLOCK_MARGIN } = {}) {
  const send = sender(client);
  const end = timeout ? Date.now() + timeout * 1000 : null;
  for (;;) {
    const left = end === null ? null : (end - Date.now()) / 1000;
    if (left !== null && left <= 0) return null;
    const cred = credentials.credential;
    const cap = blockSeconds(cred ? cred.expiresAt : null, left,
      { margin, commandTimeout: commandTimeoutOf(client) });
    const reply = await send([...args, cap.toFixed(3)]);
    if (reply !== null && reply !== undefined) return reply;
  }
}

class Subscriber extends EventEmitter {
  /**
   * @param {CredentialFile} credentialFile
   * @param {{open: () => Promise<object>, subscribe: (c: object) => Promise<void>,
   *   unsubscribe: (c: object) => Promise<void>, close: (c: object) => Promise<void>,
   *   destroy?: (c: object) => void, inPlace: boolean | ((c: object) => boolean)}} driver
   *   one connection per open(); c.credentials is its adapter; destroy: close at once,
   *   dropping what is pending (default: close); inPlace: whether c re-AUTHs while
   *   subscribed
   */
  constructor(credentialFile, driver) {
    super();
    this.credentialFile = credentialFile;
    this.inPlace = driver.inPlace === true; // settled by start() when a function
    this.switches = 0;
    this.closed = false;
    this._driver = driver;
    this._conn = null;
    this._chain = Promise.resolve();
    this._retry = null;
    this._failures = 0; // failed attempts at the switch under way
    this._onChange = () => this._schedule();
  }

  /** Opens and subscribes the first connection; resolves to this. */
  async start() {
    this._conn = await this._openSubscribed();
    if (typeof this._driver.inPlace === 'function') this.inPlace = this._driver.inPlace(this._conn);
    if (!this.inPlace) {
      this.credentialFile.on('change', this._onChange);
      // a change while the first connection subscribed was heard by nobody (its adapter
      // cannot AUTH a subscribed RESP2 connection): switch now, not at the next change,
      // when the server is about to close this one
      this._schedule();
    }
    return this;
  }

  get duplicatesPossible() {
    return this.switches > 0;
  }

  /** The adapter of the connection now subscribed. */
  get credentials() {
    return this._conn ? this._conn.credentials : null;
  }

  async _openSubscribed() {
    const c = await this._driver.open();
    c.credential = c.credentials.credential; // what it authenticated with
    try {
      await this._driver.subscribe(c);
    } catch (err) {
      await this._driver.close(c).catch(() => {});
      throw err;
    }
    return c;
  }

  _schedule() {
    this._chain = this._chain.then(() => this._switchIfStale());
    return this._chain;
  }

  async _switchIfStale() {
    clearTimeout(this._retry);
    this._retry = null;
    const old = this._conn;
    if (this.closed || !old || old.credential.equals(this.credentialFile.get().current)) {
      this._failures = 0;
      return;
    }
    let fresh;
    try {
      fresh = await this._openWithin(attemptMs(old.credential));
    } catch (err) {
      this._report(err);
      this._failures++;
      if (!this.closed) {
        this._retry = setTimeout(() => this._schedule(), retryMs(this._failures)).unref();
      }
      return;
    }
    this._failures = 0;
    if (this.closed) {
      await this._driver.close(fresh).catch(() => {});
      return;
    }
    this._conn = fresh;
    await this._leave(old);
    this.switches++;
    this.emit('switch', fresh.credential);
  }

  /** _openSubscribed(), given up after ms (the connection that comes late is closed). */
  _openWithin(ms) {
    const opening = this._openSubscribed();
    return within(opening, ms, 'opening and subscribing a new connection').catch((err) => {
      opening.then((c) => this._driver.close(c)).catch(() => {});
      throw err;
    });
  }

  /** Unsubscribes the old connection (delivering what it still receives) and closes it,
   * each within LEAVE_MAX_MS and until 1 s before its credential expires; else (or when
   * either fails) destroys it: the new connection already has every message. */
  async _leave(old) {
    const ms = () => Math.max(0, Math.min(LEAVE_MAX_MS,
      msBeforeExpiry(old.credential) + BLOCK_MARGIN * 500));
    try {
      await within(this._driver.unsubscribe(old), ms(), 'unsubscribing the old connection');
      await within(this._driver.close(old), ms(), 'closing the old connection');
      return;
    } catch (err) {
      if (!(err instanceof SwitchTimeout)) this._report(err);
    }
    try {
      const d = this._driver;
      Promise.resolve(d.destroy ? d.destroy(old) : d.close(old)).catch(() => {});
    } catch { /* it is gone either way */ }
  }

  _report(err) {
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  /** Unsubscribes and closes the connection; stops following the file. */
  async close() {
    this.closed = true;
    clearTimeout(this._retry);
    this.credentialFile.off('change', this._onChange);
    await this._chain.catch(() => {});
    const c = this._conn;
    this._conn = null;
    if (c) await this._driver.close(c);
  }
}

function targets(channels, patterns) {
  const ch = [...(channels || [])];
  const pt = [...(patterns || [])];
  if (ch.length === 0 && pt.length === 0) {
    throw new TypeError('a Subscriber needs channels or patterns');
  }
  return { ch, pt };
}

/** A node-redis subscriber. createClient: node-redis' createClient; options: its options
 * (without credentialsProvider); sub: {channels, patterns, onMessage(message, channel),
 * onError}. RESP: 3 re-AUTHs in place; RESP 2 (node-redis' default) makes before it
 * breaks. Resolves once subscribed. */
async function nodeRedisSubscriber(createClient, credentialFile, options, sub) {
  const { ch, pt } = targets(sub.channels, sub.patterns);
  const onError = sub.onError || (() => {});
  const driver = {
    inPlace: () => options.RESP === 3,
    open: async () => {
      const credentials = nodeRedisCredentialsProvider(credentialFile, { onError });
      const client = credentials.attach(createClient({ ...options,
        credentialsProvider: credentials }));
      client.on('error', onError);
      try {
        await client.connect();
      } catch (err) {
        credentials.close();
        throw err;
      }
      return { client, credentials };
    },
    subscribe: async ({ client }) => {
      if (ch.length) await client.subscribe(ch, sub.onMessage);
      if (pt.length) await client.pSubscribe(pt, sub.onMessage);
    },
    unsubscribe: async ({ client }) => {
      if (ch.length) await client.unsubscribe();
      if (pt.length) await client.pUnsubscribe();
    },
    close: async ({ client, credentials }) => {
      credentials.close();
      if (client.isOpen) await client.close();
    },
    destroy: ({ client, credentials }) => {
      credentials.close();
      if (client.isOpen) client.destroy();
    },
  };
  const s = new Subscriber(credentialFile, driver);
  if (sub.onError) s.on('error', sub.onError);
  return s.start();
}

/** An ioredis subscriber. Redis: the ioredis class; options: its options; sub as for
 * nodeRedisSubscriber. RESP3 (protocol: 3, ioredis 6's default) re-AUTHs in place; RESP2
 * (ioredis 5, or protocol: 2) makes before it breaks. Resolves once subscribed. */
async function ioredisSubscriber(Redis, credentialFile, options, sub) {
  const { ch, pt } = targets(sub.channels, sub.patterns);
  const onError = sub.onError || (() => {});
  const driver = {
    inPlace: ({ client }) => client.options.protocol === 3, // ioredis 6's default
    open: async () => {
      const client = new Redis({ ...options, lazyConnect: true });
      const credentials = attachIoredis(client, credentialFile, { onError });
      client.on('error', onError);
      client.on('message', (channel, message) => sub.onMessage(message, channel));
      client.on('pmessage', (pattern, channel, message) => sub.onMessage(message, channel));
      try {
        await client.connect();
      } catch (err) {
        credentials.close();
        client.disconnect();
        throw err;
      }
      return { client, credentials };
    },
    subscribe: async ({ client, credentials }) => {
      credentials.subscriber = true; // no AUTH behind the SUBSCRIBE (RESP2: refused)
      if (ch.length) await client.subscribe(...ch);
      if (pt.length) await client.psubscribe(...pt);
    },
    unsubscribe: async ({ client }) => {
      if (ch.length) await client.unsubscribe();
      if (pt.length) await client.punsubscribe();
    },
    close: async ({ client, credentials }) => {
      credentials.close();
      client.disconnect();
    },
  };
  const s = new Subscriber(credentialFile, driver);
  if (sub.onError) s.on('error', sub.onError);
  return s.start();
}

module.exports = {
  BLOCK_MARGIN, MIN_BLOCK, blockSeconds, blockingCommand, Subscriber, nodeRedisSubscriber,
  ioredisSubscriber,
};
