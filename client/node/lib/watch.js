'use strict';
// CredentialFile: follows one published credential, <runtime_dir>/<name>.json.
//
// Contract:
// - It watches the *directory* (fs.watch, inotify on Linux): the agent replaces the file
//   by rename, and a watch on the file would stay on the old inode. The watch is set
//   before the first read, so a publication between the two is not missed. A poll
//   (stat every pollIntervalMs, default 1 s) backs the watch up and re-creates it when
//   the directory was removed and created again.
// - On each event for its name it re-reads the file (synchronously: a few hundred bytes
//   on tmpfs) and emits 'change' (snapshot) when the credential changed. A file that
//   cannot be used emits 'error' (err, keptSnapshot) once per bad version and never
//   replaces the last good snapshot; `lastError` says what happened.
// - get() returns the current Snapshot without I/O once one was loaded; before that it
//   tries to read the file and throws CredentialUnavailable.
// - Neither the watch nor the timer keeps the process alive.
const fs = require('node:fs');
const path = require('node:path');
const { EventEmitter } = require('node:events');
const {
  MAX_FILE, NAME_RE, CredentialFileError, parseCredentialFile, defaultRuntimeDir,
} = require('./credfile');

/** No good credential was ever loaded from the file. */
class CredentialUnavailable extends CredentialFileError {}

function readSmallFile(file) {
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOCTTY |
    fs.constants.O_NONBLOCK);
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new CredentialFileError(file, 'not a regular file');
    const buf = Buffer.alloc(MAX_FILE + 1);
    let len = 0;
    for (;;) {
      const n = fs.readSync(fd, buf, len, buf.length - len, null);
      if (n === 0) break;
      len += n;
      if (len > MAX_FILE) throw new CredentialFileError(file, 'larger than 64 KiB', 'EFBIG');
    }
    return { bytes: buf.subarray(0, len), key: statKey(st), wipe: () => buf.fill(0) };
  } finally {
    fs.closeSync(fd);
  }
}

function statKey(st) {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
}

class CredentialFile extends EventEmitter {
  /**
   * @param {string} name the credential's name ([A-Za-z0-9_.-]{1,64}, not starting with '.')
   * @param {{runtimeDir?: string, pollIntervalMs?: number, watch?: boolean}} [options]
   */
  constructor(name, { runtimeDir, pollIntervalMs = 1000, watch = true } = {}) {
    super();
    if (typeof name !== 'string' || !NAME_RE.test(name) || name.startsWith('.')) {
      throw new TypeError(`invalid credential name ${JSON.stringify(name)}: ` +
        "[A-Za-z0-9_.-]{1,64}, not starting with '.'");
    }
    this.name = name;
    this.runtimeDir = runtimeDir || defaultRuntimeDir();
    this.path = path.join(this.runtimeDir, `${name}.json`);
    this.lastError = null;
    this.reads = 0; // how many times the file was actually read (for tests)
    this._snap = null;
    this._key = null;
    this._dirIno = null;
    this._watcher = null;
    this._timer = null;
    this._closed = false;
    if (watch) this._start(pollIntervalMs);
  }

  /** The generation of the current snapshot: 0 while none, +1 at each change. */
  get generation() {
    return this._snap ? this._snap.generation : 0;
  }

  /** The current Snapshot. Throws CredentialUnavailable while none was ever loaded. */
  get() {
    if (this._snap) return this._snap;
    this.reload();
    if (!this._snap) {
      const e = this.lastError;
      throw new CredentialUnavailable(this.path, e ? e.message.replace(`${this.path}: `, '')
        : 'not loaded', e && e.code);
    }
    return this._snap;
  }

  /** Reads the file now. True when the credential changed. Never throws. */
  reload() {
    let r;
    try {
      r = readSmallFile(this.path);
    } catch (e) {
      this._key = null;
      return this._fail(e instanceof CredentialFileError ? e
        : new CredentialFileError(this.path, e.code === 'ENOENT' ? 'no such file'
          : `cannot read (${e.code || e.message})`, e.code || 'EIO'));
    }
    this.reads++;
    if (r.key === this._key && this.lastError) {
      r.wipe();
      return false; // the same bad file again: already reported
    }
    this._key = r.key;
    let snap;
    try {
      snap = parseCredentialFile(r.bytes, this.name, this.path);
    } catch (e) {
      return this._fail(e);
    } finally {
      r.wipe();
    }
    this.lastError = null;
    if (snap.sameAs(this._snap)) return false;
    this._snap = snap.withGeneration(this.generation + 1);
    this.emit('change', this._snap);
    return true;
  }

  /** Resolves with the snapshot once a good file is there (rejects after timeoutMs). */
  ready(timeoutMs = 30000) {
    if (this._snap) return Promise.resolve(this._snap);
    return new Promise((resolve, reject) => {
      const done = (snap) => {
        clearTimeout(t);
        resolve(snap);
      };
      const t = setTimeout(() => {
        this.off('change', done);
        reject(new CredentialUnavailable(this.path, `nothing usable after ${timeoutMs} ms` +
          (this.lastError ? ` (${this.lastError.message})` : '')));
      }, timeoutMs);
      this.once('change', done);
      this.reload();
    });
  }

  /** Stops watching. The last snapshot stays readable through get(). */
  close() {
    this._closed = true;
    clearInterval(this._timer);
    this._unwatch();
  }

  _fail(err) {
    const again = this.lastError && this.lastError.message === err.message;
    this.lastError = err;
    if (!again && this.listenerCount('error') > 0) this.emit('error', err, this._snap);
    return false;
  }

  _start(pollIntervalMs) {
    this._watch();
    this.reload();
    this._timer = setInterval(() => this._poll(), pollIntervalMs);
    this._timer.unref();
  }

  _watch() {
    try {
      this._dirIno = fs.statSync(this.runtimeDir).ino;
      this._watcher = fs.watch(this.runtimeDir, { persistent: false }, (type, file) => {
        if (file === null || file === `${this.name}.json`) this.reload();
      });
      this._watcher.on('error', () => this._unwatch());
    } catch {
      this._unwatch(); // no directory yet: the poll sets the watch once it exists
    }
  }

  _unwatch() {
    if (this._watcher) this._watcher.close();
    this._watcher = null;
    this._dirIno = null;
  }

  _poll() {
    if (this._closed) return;
    let dirIno = null;
    try {
      dirIno = fs.statSync(this.runtimeDir).ino;
    } catch { /* gone: keep the last snapshot */ }
    if (dirIno !== this._dirIno) {
      this._unwatch();
      if (dirIno !== null) this._watch();
    }
    let key = null;
    try {
      key = statKey(fs.statSync(this.path));
    } catch { /* missing */ }
    if (key !== this._key) this.reload();
  }
}

module.exports = { CredentialFile, CredentialUnavailable };
