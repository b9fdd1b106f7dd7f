/**
 * Public keys, fingerprints and safety numbers (docs/protocol.md, "Identity and fingerprints",
 * "Safety number").
 * @module protocol/keys
 */

import * as b64u from "./b64u.js";
import { ProtocolError } from "./errors.js";

/** Size in bytes of every raw Ed25519 / X25519 public or private key. */
export const KEY_SIZE = 32;

const FIELDS = /** @type {const} */ (["sign", "dh"]);

/** The public half of an identity: raw 32-byte Ed25519 (`sign`) and X25519 (`dh`) keys. */
export class PublicKeys {
  /**
   * @param {Uint8Array} sign the 32-byte Ed25519 public key
   * @param {Uint8Array} dh the 32-byte X25519 public key
   * @throws {ProtocolError} naming the field that is not 32 bytes
   */
  constructor(sign, dh) {
    for (const [field, value] of /** @type {const} */ ([["sign", sign], ["dh", dh]])) {
      if (!(value instanceof Uint8Array)) {
        throw new ProtocolError(`public keys: field '${field}' must be a Uint8Array`);
      }
      if (value.length !== KEY_SIZE) {
        throw new ProtocolError(
          `public keys: field '${field}' must be ${KEY_SIZE} bytes, not ${value.length}`,
        );
      }
    }
    /** @type {Uint8Array} */
    this.sign = Uint8Array.from(sign);
    /** @type {Uint8Array} */
    this.dh = Uint8Array.from(dh);
    Object.freeze(this);
  }

  /**
   * Parse the JSON object `{"sign": b64u, "dh": b64u}`.
   * @param {unknown} obj
   * @returns {PublicKeys}
   * @throws {ProtocolError} naming the missing, unknown or malformed field
   */
  static fromJson(obj) {
    if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
      throw new ProtocolError("public keys: expected a JSON object with 'sign' and 'dh'");
    }
    const extra = Object.keys(obj).filter((k) => k !== "sign" && k !== "dh").sort();
    if (extra.length > 0) {
      throw new ProtocolError(`public keys: unknown field(s) ${extra.map((k) => `'${k}'`).join(", ")}`);
    }
    const raw = FIELDS.map((field) => {
      if (!Object.hasOwn(obj, field)) throw new ProtocolError(`public keys: field '${field}' is missing`);
      return decodeKey(/** @type {Record<string, unknown>} */ (obj)[field], field, "public keys");
    });
    return new PublicKeys(raw[0], raw[1]);
  }

  /**
   * Return the JSON object `{"sign": b64u, "dh": b64u}`.
   * @returns {{sign: string, dh: string}}
   */
  toJson() {
    return { sign: b64u.encode(this.sign), dh: b64u.encode(this.dh) };
  }

  /**
   * Return the one-line text form `"<b64u sign>.<b64u dh>"` (for copying and QR codes).
   * @returns {string}
   */
  keyText() {
    return `${b64u.encode(this.sign)}.${b64u.encode(this.dh)}`;
  }

  /**
   * Parse the text written by {@link PublicKeys#keyText}.
   * @param {string} text
   * @returns {PublicKeys}
   * @throws {ProtocolError} naming what is wrong
   */
  static fromKeyText(text) {
    if (typeof text !== "string") throw new ProtocolError("key text: expected a string");
    const parts = text.trim().split(".");
    if (parts.length !== 2) {
      throw new ProtocolError("key text: expected '<sign>.<dh>' (two base64url keys separated by '.')");
    }
    return new PublicKeys(decodeKey(parts[0], "sign", "key text"), decodeKey(parts[1], "dh", "key text"));
  }

  /**
   * Tell whether `other` holds the same two keys.
   * @param {PublicKeys | null | undefined} other
   * @returns {boolean}
   */
  equals(other) {
    return other instanceof PublicKeys && bytesEqual(this.sign, other.sign) && bytesEqual(this.dh, other.dh);
  }

  /**
   * Return `sign || dh` (64 bytes).
   * @returns {Uint8Array}
   */
  concat() {
    return concatBytes(this.sign, this.dh);
  }

  /**
   * The fingerprint shown to people: the first 16 bytes of SHA-256(sign || dh) as lower-case
   * hex in 8 groups of 4 separated by single spaces, e.g. `4e93 5d74 df52 6cea 8f83 de9b 7c7b c4cd`.
   * @returns {Promise<string>}
   */
  async fingerprint() {
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", this.concat()));
    return group(toHex(digest.subarray(0, 16)), 4);
  }
}

/**
 * The safety number two endpoints compare; the same whichever order `a` and `b` are given in.
 * @param {PublicKeys} a
 * @param {PublicKeys} b
 * @returns {Promise<string>} 60 decimal digits in 12 groups of 5 separated by single spaces
 */
export async function safetyNumber(a, b) {
  if (!(a instanceof PublicKeys) || !(b instanceof PublicKeys)) {
    throw new ProtocolError("safetyNumber: expected two PublicKeys");
  }
  let [lo, hi] = [a.concat(), b.concat()];
  if (compareBytes(lo, hi) > 0) [lo, hi] = [hi, lo];
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", concatBytes(lo, hi)));
  const n = BigInt("0x" + toHex(digest));
  const digits = (n % 10n ** 60n).toString().padStart(60, "0");
  return group(digits, 5);
}

/**
 * Normalize a fingerprint typed or pasted by a person (spaces, colons, dashes, upper case).
 * @param {string} text
 * @returns {string} 32 lower-case hex digits without separators
 * @throws {ProtocolError} when it is not 32 hex digits
 */
export function normalizeFingerprint(text) {
  if (typeof text !== "string") throw new ProtocolError("fingerprint: expected a string");
  const hex = text.replace(/[\s:-]/g, "").toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(hex)) {
    throw new ProtocolError(
      `fingerprint: expected 32 hex digits (e.g. '4e93 5d74 df52 6cea 8f83 de9b 7c7b c4cd'), ` +
        `got ${JSON.stringify(text)}`,
    );
  }
  return hex;
}

/**
 * Format 32 hex digits as a fingerprint (8 groups of 4 separated by single spaces).
 * @param {string} text any form {@link normalizeFingerprint} accepts
 * @returns {string}
 */
export function formatFingerprint(text) {
  return group(normalizeFingerprint(text), 4);
}

/**
 * Decode one base64url key field to exactly 32 bytes.
 * @param {unknown} value
 * @param {string} field
 * @param {string} what
 * @returns {Uint8Array}
 */
function decodeKey(value, field, what) {
  if (typeof value !== "string") throw new ProtocolError(`${what}: field '${field}' must be a base64url string`);
  let raw;
  try {
    raw = b64u.decode(value);
  } catch (err) {
    throw new ProtocolError(`${what}: field '${field}': ${/** @type {Error} */ (err).message}`);
  }
  if (raw.length !== KEY_SIZE) {
    throw new ProtocolError(`${what}: field '${field}' must decode to ${KEY_SIZE} bytes, not ${raw.length}`);
  }
  return raw;
}

/**
 * Lower-case hex of bytes.
 * @param {Uint8Array} bytes
 * @returns {string}
 */
export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Bytes of a hex string (either case).
 * @param {string} hex
 * @returns {Uint8Array}
 * @throws {ProtocolError} when it is not an even number of hex digits
 */
export function fromHex(hex) {
  if (typeof hex !== "string" || !/^(?:[0-9a-fA-F]{2})*$/.test(hex)) {
    throw new ProtocolError("fromHex: expected an even number of hex digits");
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/**
 * Concatenate byte strings.
 * @param {...Uint8Array} parts
 * @returns {Uint8Array}
 */
export function concatBytes(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * Tell whether two byte strings are equal (constant time in their common length).
 * @param {Uint8Array} a
 * @param {Uint8Array} b
 * @returns {boolean}
 */
export function bytesEqual(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/**
 * Compare byte strings as unsigned, lexicographically.
 * @param {Uint8Array} a
 * @param {Uint8Array} b
 * @returns {number}
 */
function compareBytes(a, b) {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/**
 * Split text into groups of `size` characters separated by single spaces.
 * @param {string} text
 * @param {number} size
 * @returns {string}
 */
function group(text, size) {
  return /** @type {RegExpMatchArray} */ (text.match(new RegExp(`.{1,${size}}`, "g"))).join(" ");
}
