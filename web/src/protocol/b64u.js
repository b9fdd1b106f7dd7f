/**
 * Strict base64url without padding (docs/protocol.md, "Conventions").
 *
 * Alphabet `A-Z a-z 0-9 - _`, no `=`; the decoder refuses any other character, a length
 * `≡ 1 (mod 4)` and a non-canonical last character (unused bits not zero), so every byte string
 * has exactly one accepted text.
 * @module protocol/b64u
 */

import { ProtocolError } from "./errors.js";

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const VALUES = new Int16Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) VALUES[ALPHABET.charCodeAt(i)] = i;

/**
 * Encode bytes as base64url without padding.
 * @param {Uint8Array} bytes
 * @returns {string}
 */
export function encode(bytes) {
  if (!(bytes instanceof Uint8Array)) {
    throw new ProtocolError(`b64u.encode: expected a Uint8Array, got ${describe(bytes)}`);
  }
  let out = "";
  let i = 0;
  for (; i + 3 <= bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63] + ALPHABET[n & 63];
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i] << 16;
    out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63];
  } else if (rest === 2) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63];
  }
  return out;
}

/**
 * Decode strict base64url without padding.
 * @param {string} text
 * @returns {Uint8Array}
 * @throws {ProtocolError} naming the offending character or rule
 */
export function decode(text) {
  if (typeof text !== "string") {
    throw new ProtocolError(`b64u.decode: expected a string, got ${describe(text)}`);
  }
  const out = new Uint8Array(Math.floor((text.length * 3) / 4));
  let acc = 0;
  let bits = 0;
  let o = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const v = c < 128 ? VALUES[c] : -1;
    if (v < 0) {
      throw new ProtocolError(
        `b64u: character ${JSON.stringify(text[i])} at position ${i} is not in A-Z a-z 0-9 - _ ` +
          "(no padding, no whitespace)",
      );
    }
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  if (text.length % 4 === 1) {
    throw new ProtocolError(`b64u: impossible length ${text.length} (≡ 1 mod 4)`);
  }
  if (bits > 0 && (acc & ((1 << bits) - 1)) !== 0) {
    throw new ProtocolError("b64u: non-canonical encoding (unused bits of the last character are not zero)");
  }
  return out;
}

/**
 * Describe a value's type for an error message.
 * @param {unknown} value
 * @returns {string}
 */
function describe(value) {
  if (value === null) return "null";
  if (typeof value === "object") return value.constructor?.name ?? "object";
  return typeof value;
}
