/**
 * Canonical JSON and a strict JSON parser (docs/protocol.md, "Canonical JSON").
 *
 * `canonical(x)` equals Python's
 * `json.dumps(x, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()` after
 * refusing anything a browser could not reproduce. `parseJson` refuses what Python's strict
 * loader refuses (repeated keys, `NaN`, `Infinity`, bad UTF-8, a byte-order mark) instead of
 * silently keeping the last of two equal keys as `JSON.parse` does.
 * @module protocol/canonical
 */

import { ProtocolError, Rejected } from "./errors.js";

/** Largest magnitude of an integer in canonical JSON (Number.MAX_SAFE_INTEGER). */
export const MAX_SAFE_INTEGER = Number.MAX_SAFE_INTEGER;

/**
 * Deepest nesting canonical JSON accepts (as the Python implementation: the top-level value is
 * at depth 0, a value nested deeper than this is refused).
 */
export const MAX_CANONICAL_DEPTH = 32;

/** Deepest nesting `parseJson` accepts before refusing the text as `bad_json`. */
export const MAX_PARSE_DEPTH = 900;

const ENCODER = new TextEncoder();

/**
 * A JSON number written with a fraction or an exponent (e.g. `1.0`, `1e3`), as `parseJson`
 * returns it with `{exactNumbers: true}`. Python reads such a literal as a float, which is not
 * a canonical JSON value and not an integer field, even when its value is integral.
 */
export class JsonFloat {
  /**
   * @param {number} value the number's value
   * @param {string} text the literal as written
   */
  constructor(value, text) {
    /** @type {number} */
    this.value = value;
    /** @type {string} */
    this.text = text;
  }
}

/**
 * Return the canonical JSON bytes (UTF-8) of `value`.
 * @param {unknown} value objects, arrays, strings, safe integers, booleans and null only
 * @returns {Uint8Array}
 * @throws {ProtocolError} naming where the unsupported value is
 */
export function canonical(value) {
  return ENCODER.encode(canonicalText(value));
}

/**
 * Return the canonical JSON text of `value` (see {@link canonical}).
 * @param {unknown} value
 * @returns {string}
 * @throws {ProtocolError} naming where the unsupported value is
 */
export function canonicalText(value) {
  return serialize(value, "value", 0);
}

/**
 * Serialize one value, refusing what canonical JSON cannot carry.
 * @param {unknown} value
 * @param {string} where path of the value, for error messages
 * @param {number} depth nesting depth of the value
 * @returns {string}
 */
function serialize(value, where, depth) {
  if (depth > MAX_CANONICAL_DEPTH) {
    throw new ProtocolError(`canonical JSON: ${where}: nested deeper than ${MAX_CANONICAL_DEPTH} levels`);
  }
  if (value === null || value === true || value === false) return JSON.stringify(value);
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) {
      throw new ProtocolError(
        `canonical JSON: ${where}: ${value} is not an integer within ±(2^53 - 1); ` +
          "send fractional or large numbers as strings",
      );
    }
    return JSON.stringify(value); // -0 becomes "0"
  }
  if (typeof value === "string") {
    if (!isWellFormed(value)) {
      throw new ProtocolError(`canonical JSON: ${where}: string is not valid Unicode (lone surrogate)`);
    }
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) {
    return "[" + value.map((item, i) => serialize(item, `${where}[${i}]`, depth + 1)).join(",") + "]";
  }
  if (value instanceof JsonFloat) {
    throw new ProtocolError(
      `canonical JSON: ${where}: ${value.text} is not an integer; send fractional numbers as strings`,
    );
  }
  if (typeof value === "object") {
    const proto = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) {
      throw new ProtocolError(
        `canonical JSON: ${where}: ${value.constructor?.name ?? "object"} is not a plain object`,
      );
    }
    const keys = Object.keys(value).sort(compareCodePoints);
    const members = keys.map((key) => {
      const inner = `${where}.${key}`;
      return serialize(key, `${where} key ${JSON.stringify(key)}`, depth + 1) + ":" +
        serialize(/** @type {Record<string, unknown>} */ (value)[key], inner, depth + 1);
    });
    return "{" + members.join(",") + "}";
  }
  throw new ProtocolError(`canonical JSON: ${where}: ${typeof value} is not allowed in JSON`);
}

/**
 * Compare two strings by Unicode code point (as Python sorts keys; equivalently by UTF-8).
 * @param {string} a
 * @param {string} b
 * @returns {number} negative, zero or positive
 */
export function compareCodePoints(a, b) {
  const x = Array.from(a, (c) => /** @type {number} */ (c.codePointAt(0)));
  const y = Array.from(b, (c) => /** @type {number} */ (c.codePointAt(0)));
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i] - y[i];
  }
  return x.length - y.length;
}

/**
 * Tell whether a string has no lone surrogate.
 * @param {string} s
 * @returns {boolean}
 */
function isWellFormed(s) {
  return typeof s.isWellFormed === "function" ? s.isWellFormed() : !/\p{Surrogate}/u.test(s);
}

// ------------------------------------------------------------------------------ strict parser

/**
 * Parse JSON strictly: the text must be one JSON value (RFC 8259) with no repeated key in any
 * object; `NaN`, `Infinity`, a byte-order mark and (for bytes) invalid UTF-8 are refused.
 * Objects are plain objects (a `"__proto__"` key is an ordinary own property).
 * @param {string | Uint8Array | ArrayBuffer} input JSON text, or its UTF-8 bytes
 * @param {{exactNumbers?: boolean}} [options] with `exactNumbers`, a number written with a
 *   fraction or an exponent is returned as a {@link JsonFloat} (as Python reads it: a float),
 *   so that integer checks and canonical JSON refuse it
 * @returns {any}
 * @throws {Rejected} with reason `bad_json`, naming the position and the problem
 */
export function parseJson(input, options = {}) {
  const text = toText(input);
  return new Parser(text, Boolean(options.exactNumbers)).parseDocument();
}

/**
 * Decode UTF-8 bytes strictly (a byte-order mark is kept, so the parser refuses it).
 * @param {string | Uint8Array | ArrayBuffer} input
 * @returns {string}
 */
function toText(input) {
  if (typeof input === "string") {
    if (!isWellFormed(input)) throw new Rejected("bad_json", "text is not valid Unicode (lone surrogate)");
    return input;
  }
  if (input instanceof ArrayBuffer || ArrayBuffer.isView(input)) {
    const bytes = input instanceof ArrayBuffer ? new Uint8Array(input) : input;
    try {
      return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
    } catch {
      throw new Rejected("bad_json", "not valid UTF-8");
    }
  }
  throw new ProtocolError(`parseJson: expected a string or bytes, got ${typeof input}`);
}

const NUMBER_RE = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?/y;
const ESCAPES = /** @type {Record<string, string>} */ ({
  '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t",
});

/** A recursive-descent JSON parser over one text. */
class Parser {
  /**
   * @param {string} text
   * @param {boolean} exactNumbers
   */
  constructor(text, exactNumbers) {
    this.text = text;
    this.pos = 0;
    this.exactNumbers = exactNumbers;
  }

  /** @returns {any} the single value of the document */
  parseDocument() {
    this.skipWhitespace();
    const value = this.parseValue(0);
    this.skipWhitespace();
    if (this.pos !== this.text.length) this.fail("extra data after the JSON value");
    return value;
  }

  /**
   * @param {string} problem
   * @returns {never}
   */
  fail(problem) {
    throw new Rejected("bad_json", `not valid JSON: ${problem} at character ${this.pos}`);
  }

  skipWhitespace() {
    const t = this.text;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
      this.pos++;
    }
  }

  /**
   * @param {number} depth
   * @returns {any}
   */
  parseValue(depth) {
    if (depth > MAX_PARSE_DEPTH) this.fail(`nested deeper than ${MAX_PARSE_DEPTH} levels`);
    const c = this.text[this.pos];
    if (c === "{") return this.parseObject(depth);
    if (c === "[") return this.parseArray(depth);
    if (c === '"') return this.parseString();
    if (c === "-" || (c >= "0" && c <= "9")) return this.parseNumber();
    for (const [word, value] of /** @type {const} */ ([["true", true], ["false", false], ["null", null]])) {
      if (this.text.startsWith(word, this.pos)) {
        this.pos += word.length;
        return value;
      }
    }
    if (c === undefined) this.fail("unexpected end of text");
    if (/^-?(NaN|Infinity)/.test(this.text.slice(this.pos, this.pos + 9))) {
      this.fail("NaN and Infinity are not JSON");
    }
    this.fail(`unexpected character ${JSON.stringify(c)}`);
  }

  /**
   * @param {number} depth
   * @returns {Record<string, any>}
   */
  parseObject(depth) {
    /** @type {Record<string, any>} */
    const obj = {};
    this.pos++; // {
    this.skipWhitespace();
    if (this.text[this.pos] === "}") {
      this.pos++;
      return obj;
    }
    for (;;) {
      if (this.text[this.pos] !== '"') this.fail("expected a string key");
      const keyAt = this.pos;
      const key = this.parseString();
      if (Object.hasOwn(obj, key)) {
        this.pos = keyAt;
        this.fail(`repeated key ${JSON.stringify(key)}`);
      }
      this.skipWhitespace();
      if (this.text[this.pos] !== ":") this.fail("expected ':' after a key");
      this.pos++;
      this.skipWhitespace();
      const value = this.parseValue(depth + 1);
      Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
      this.skipWhitespace();
      const c = this.text[this.pos];
      this.pos++;
      if (c === "}") return obj;
      if (c !== ",") {
        this.pos--;
        this.fail("expected ',' or '}' in an object");
      }
      this.skipWhitespace();
    }
  }

  /**
   * @param {number} depth
   * @returns {any[]}
   */
  parseArray(depth) {
    const arr = [];
    this.pos++; // [
    this.skipWhitespace();
    if (this.text[this.pos] === "]") {
      this.pos++;
      return arr;
    }
    for (;;) {
      arr.push(this.parseValue(depth + 1));
      this.skipWhitespace();
      const c = this.text[this.pos];
      this.pos++;
      if (c === "]") return arr;
      if (c !== ",") {
        this.pos--;
        this.fail("expected ',' or ']' in an array");
      }
      this.skipWhitespace();
    }
  }

  /** @returns {string} */
  parseString() {
    const t = this.text;
    this.pos++; // opening quote
    let out = "";
    let start = this.pos;
    for (;;) {
      if (this.pos >= t.length) this.fail("unterminated string");
      const c = t.charCodeAt(this.pos);
      if (c === 0x22) {
        out += t.slice(start, this.pos);
        this.pos++;
        return out;
      }
      if (c < 0x20) this.fail("control character in a string (must be escaped)");
      if (c !== 0x5c) {
        this.pos++;
        continue;
      }
      out += t.slice(start, this.pos);
      const e = t[this.pos + 1];
      if (e === "u") {
        const hex = t.slice(this.pos + 2, this.pos + 6);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail("bad \\u escape");
        out += String.fromCharCode(parseInt(hex, 16));
        this.pos += 6;
      } else if (e !== undefined && Object.hasOwn(ESCAPES, e)) {
        out += ESCAPES[e];
        this.pos += 2;
      } else {
        this.fail("bad escape in a string");
      }
      start = this.pos;
    }
  }

  /** @returns {number | JsonFloat} */
  parseNumber() {
    NUMBER_RE.lastIndex = this.pos;
    const m = NUMBER_RE.exec(this.text);
    if (m === null) this.fail("bad number");
    const literal = m[0];
    this.pos += literal.length;
    const value = Number(literal);
    if (this.exactNumbers && (m[1] !== undefined || m[2] !== undefined)) {
      return new JsonFloat(value, literal);
    }
    return value;
  }
}
