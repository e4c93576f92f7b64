'use strict';
// A strict JSON reader for the credential file, as strict as the agent's own C client
// (jansson with JSON_REJECT_DUPLICATES): duplicate keys, lone surrogates, integers that
// do not fit in 64 bits, \u0000 in a key and trailing text are refused, and an integer is told apart from
// a real (`"format": 1.0` is not format 1). JSON.parse can do none of these.
//
// Contract: parse(text) returns plain objects, arrays, strings, booleans, null, and for
// numbers JsonNumber {int: BigInt or null, real: Number or null}. It throws JsonError, whose message never
// quotes the input (the input holds a password).

class JsonError extends Error {}

/** A JSON number: an integer (BigInt `int`) or a real (Number `real`). */
class JsonNumber {
  constructor(int, real) {
    this.int = int;
    this.real = real;
  }
}

const WS = new Set([0x20, 0x09, 0x0a, 0x0d]);
const ESC = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
const INT_MIN = -(2n ** 63n);
const INT_MAX = 2n ** 63n - 1n;
const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
// jansson's JSON_PARSER_MAX_DEPTH: 2048 levels, the top-level value the first (depth 0
// here). Fewer would refuse a file that the C client and the agent read.
const MAX_DEPTH = 2047;

class Reader {
  constructor(text) {
    this.s = text;
    this.i = 0;
  }

  fail(what) {
    throw new JsonError(`malformed JSON: ${what} at offset ${this.i}`);
  }

  ws() {
    while (this.i < this.s.length && WS.has(this.s.charCodeAt(this.i))) this.i++;
  }

  value(depth) {
    if (depth > MAX_DEPTH) this.fail('nested too deeply');
    this.ws();
    const c = this.s[this.i];
    if (c === '{') return this.object(depth);
    if (c === '[') return this.array(depth);
    if (c === '"') return this.string();
    for (const [word, v] of [['true', true], ['false', false], ['null', null]]) {
      if (this.s.startsWith(word, this.i)) {
        this.i += word.length;
        return v;
      }
    }
    return this.number();
  }

  object(depth) {
    const out = Object.create(null);
    this.i++;
    this.ws();
    if (this.s[this.i] === '}') {
      this.i++;
      return out;
    }
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '"') this.fail('expected a key');
      const k = this.string();
      if (k.includes('\0')) this.fail('\\u0000 in a key'); // jansson refuses one
      if (Object.prototype.hasOwnProperty.call(out, k)) this.fail('duplicate key');
      this.ws();
      if (this.s[this.i++] !== ':') this.fail("expected ':'");
      out[k] = this.value(depth + 1);
      this.ws();
      const c = this.s[this.i++];
      if (c === '}') return out;
      if (c !== ',') this.fail("expected ',' or '}'");
    }
  }

  array(depth) {
    const out = [];
    this.i++;
    this.ws();
    if (this.s[this.i] === ']') {
      this.i++;
      return out;
    }
    for (;;) {
      out.push(this.value(depth + 1));
      this.ws();
      const c = this.s[this.i++];
      if (c === ']') return out;
      if (c !== ',') this.fail("expected ',' or ']'");
    }
  }

  hex4() {
    const h = this.s.slice(this.i, this.i + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(h)) this.fail('bad \\u escape');
    this.i += 4;
    return parseInt(h, 16);
  }

  escape() {
    const c = this.s[this.i++];
    if (c in ESC) return ESC[c];
    if (c !== 'u') this.fail('bad escape');
    const u = this.hex4();
    if (u >= 0xdc00 && u <= 0xdfff) this.fail('lone surrogate');
    if (u < 0xd800 || u > 0xdbff) return String.fromCharCode(u);
    if (this.s[this.i] !== '\\' || this.s[this.i + 1] !== 'u') this.fail('lone surrogate');
    this.i += 2;
    const lo = this.hex4();
    if (lo < 0xdc00 || lo > 0xdfff) this.fail('lone surrogate');
    return String.fromCharCode(u, lo);
  }

  string() {
    this.i++;
    let out = '';
    let start = this.i;
    for (;;) {
      if (this.i >= this.s.length) this.fail('unterminated string');
      const c = this.s.charCodeAt(this.i);
      if (c === 0x22) {
        out += this.s.slice(start, this.i++);
        return out;
      }
      if (c < 0x20) this.fail('control character in a string');
      if (c === 0x5c) {
        out += this.s.slice(start, this.i++);
        out += this.escape();
        start = this.i;
      } else {
        this.i++;
      }
    }
  }

  number() {
    NUMBER.lastIndex = this.i;
    const m = NUMBER.exec(this.s);
    if (!m) this.fail('unexpected character');
    this.i = NUMBER.lastIndex;
    if (m[1] === undefined && m[2] === undefined) {
      const v = BigInt(m[0]);
      if (v < INT_MIN || v > INT_MAX) this.fail('integer out of range');
      return new JsonNumber(v, null);
    }
    const r = Number(m[0]);
    if (!Number.isFinite(r)) this.fail('real out of range');
    return new JsonNumber(null, r);
  }
}

function parse(text) {
  const r = new Reader(text);
  const v = r.value(0);
  r.ws();
  if (r.i !== text.length) r.fail('text after the value');
  return v;
}

module.exports = { parse, JsonError, JsonNumber };
