/**
 * The signaling envelope, version 1: canonical JSON, Ed25519 signature, encrypted body
 * (docs/protocol.md, "Envelope", "Signature", "Body encryption").
 *
 * `seal` builds an envelope, `parseEnvelope` checks its structure (receiver rules 1–5),
 * `verify` checks the signature and `openBody` decrypts. Checks that need receiver state
 * (recipient address, pinned keys, clock window, replay cache) belong to `receiver.js`.
 * @module protocol/envelope
 */

import * as b64u from "./b64u.js";
import { JsonFloat, canonical, canonicalText, parseJson } from "./canonical.js";
import { ProtocolError, Rejected } from "./errors.js";
import { importPrivate, x25519, Identity } from "./identity.js";
import { KEY_SIZE, PublicKeys, concatBytes } from "./keys.js";

/** The value of `v` this module writes and accepts. */
export const ENVELOPE_VERSION = 1;
/** Limit, in bytes, of an envelope on the wire (larger ones are `oversize`). */
export const MAX_ENVELOPE_BYTES = 65536;
/** Size in bytes of the envelope nonce. */
export const NONCE_SIZE = 16;
/** Size in bytes of the AES-GCM IV. */
export const IV_SIZE = 12;
/** Size in bytes of the AES-GCM tag appended to the ciphertext. */
export const TAG_SIZE = 16;
/** Size in bytes of an Ed25519 signature. */
export const SIG_SIZE = 64;

const UTF8 = new TextEncoder();
/** Prefix of the bytes the Ed25519 signature covers: `callbox/v1 sig\n`. */
export const SIG_CONTEXT = UTF8.encode("callbox/v1 sig\n");
/** Prefix of the AES-GCM associated data: `callbox/v1 aad\n`. */
export const AAD_CONTEXT = UTF8.encode("callbox/v1 aad\n");
/** HKDF `info` of the body key: `callbox/v1 body`. */
export const HKDF_INFO = UTF8.encode("callbox/v1 body");

/** The message types of protocol version 1 (docs/protocol.md, "Messages"). */
export const MESSAGE_TYPES = new Set([
  "invite", "ringing", "answer", "accept", "busy", "decline", "cancel", "hangup",
  "mute", "dtmf", "reoffer", "reanswer", "restart", "unlock", "unlock_result", "ack",
  "push_subscribe", "push_unsubscribe", "push_status",
]);

const ENVELOPE_FIELDS = ["v", "type", "call_id", "from", "to", "ts", "nonce", "body", "sig"];
const BODY_FIELDS = ["epk", "iv", "ct"];
const ADDRESS_RE = /^[a-z0-9_.-]{1,64}$/;
const CALL_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const TYPE_RE = /^[a-z0-9_-]{1,32}$/;

/**
 * Tell whether `value` is an endpoint address: 1 to 64 characters of `[a-z0-9_.-]`.
 * @param {unknown} value
 * @returns {boolean}
 */
export function isValidAddress(value) {
  return typeof value === "string" && ADDRESS_RE.test(value);
}

/**
 * Tell whether `value` is a call id: 1 to 64 characters of `[A-Za-z0-9_-]`.
 * @param {unknown} value
 * @returns {boolean}
 */
export function isValidCallId(value) {
  return typeof value === "string" && CALL_ID_RE.test(value);
}

/**
 * Tell whether `value` is a well-formed message type: 1 to 32 characters of `[a-z0-9_-]`
 * (whether the type is known is the receiver's business: `unknown_type`).
 * @param {unknown} value
 * @returns {boolean}
 */
export function isValidType(value) {
  return typeof value === "string" && TYPE_RE.test(value);
}

/**
 * Tell whether `value` is a valid `ts`: an integer in 0 … 2^53 − 1.
 * @param {unknown} value
 * @returns {boolean}
 */
function isTs(value) {
  return Number.isSafeInteger(value) && /** @type {number} */ (value) >= 0;
}

/**
 * Return a fresh call id: 16 random bytes, base64url.
 * @returns {string}
 */
export function newCallId() {
  return b64u.encode(crypto.getRandomValues(new Uint8Array(16)));
}

/**
 * A structurally valid envelope (as `parseEnvelope` returns it); the signature is not checked.
 * Header fields keep their wire meaning; binary fields hold raw bytes.
 */
export class Envelope {
  /**
   * @param {{v: number, type: string, callId: string, from: string, to: string, ts: number,
   *   nonce: Uint8Array, epk: Uint8Array, iv: Uint8Array, ct: Uint8Array, sig: Uint8Array}} fields
   */
  constructor({ v, type, callId, from, to, ts, nonce, epk, iv, ct, sig }) {
    /** @type {number} */ this.v = v;
    /** @type {string} */ this.type = type;
    /** @type {string} */ this.callId = callId;
    /** @type {string} */ this.from = from;
    /** @type {string} */ this.to = to;
    /** @type {number} */ this.ts = ts;
    /** @type {Uint8Array} */ this.nonce = nonce;
    /** @type {Uint8Array} */ this.epk = epk;
    /** @type {Uint8Array} */ this.iv = iv;
    /** @type {Uint8Array} */ this.ct = ct;
    /** @type {Uint8Array} */ this.sig = sig;
    Object.freeze(this);
  }

  /**
   * Return a copy with some fields replaced (tests use it to tamper with an envelope).
   * @param {Partial<Envelope>} changes
   * @returns {Envelope}
   */
  with(changes) {
    return new Envelope({ ...this, ...changes });
  }

  /**
   * The header object `{v, type, call_id, from, to, ts, nonce}` with wire names and values.
   * @returns {{v: number, type: string, call_id: string, from: string, to: string, ts: number, nonce: string}}
   */
  header() {
    return {
      v: this.v, type: this.type, call_id: this.callId, from: this.from, to: this.to, ts: this.ts,
      nonce: b64u.encode(this.nonce),
    };
  }

  /**
   * The encrypted body object `{epk, iv, ct}` (base64url fields).
   * @returns {{epk: string, iv: string, ct: string}}
   */
  bodyJson() {
    return { epk: b64u.encode(this.epk), iv: b64u.encode(this.iv), ct: b64u.encode(this.ct) };
  }

  /**
   * The signed object: the header plus `body` (every field but `sig`).
   * @returns {Record<string, unknown>}
   */
  signedObject() {
    return { ...this.header(), body: this.bodyJson() };
  }

  /**
   * The AES-GCM associated data: `callbox/v1 aad\n` || canonical(header).
   * @returns {Uint8Array}
   */
  aad() {
    return concatBytes(AAD_CONTEXT, canonical(this.header()));
  }

  /**
   * The bytes the signature covers: `callbox/v1 sig\n` || canonical(signed object).
   * @returns {Uint8Array}
   */
  signedBytes() {
    return concatBytes(SIG_CONTEXT, canonical(this.signedObject()));
  }

  /**
   * The complete wire object, `sig` included.
   * @returns {Record<string, unknown>}
   */
  toJson() {
    return { ...this.signedObject(), sig: b64u.encode(this.sig) };
  }

  /**
   * The wire text: the canonical JSON of {@link Envelope#toJson}.
   * @returns {string}
   */
  toText() {
    return canonicalText(this.toJson());
  }

  /**
   * What the envelope claims to be, for error reports.
   * @returns {{type: string, callId: string, from: string}}
   */
  claimed() {
    return { type: this.type, callId: this.callId, from: this.from };
  }
}

/**
 * The 32-byte body key: HKDF-SHA256(IKM = shared, salt = epk || recipient's X25519 public key,
 * info = `callbox/v1 body`).
 * @param {Uint8Array} shared the X25519 shared secret
 * @param {Uint8Array} epk the ephemeral public key
 * @param {Uint8Array} recipientDh the recipient's X25519 public key
 * @returns {Promise<Uint8Array>}
 */
export async function deriveBodyKeyBytes(shared, epk, recipientDh) {
  const subtle = crypto.subtle;
  const ikm = await subtle.importKey("raw", shared, "HKDF", false, ["deriveBits"]);
  const bits = await subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: concatBytes(epk, recipientDh), info: HKDF_INFO },
    ikm,
    256,
  );
  return new Uint8Array(bits);
}

/**
 * The body key as a non-extractable AES-256-GCM CryptoKey.
 * @param {Uint8Array} shared
 * @param {Uint8Array} epk
 * @param {Uint8Array} recipientDh
 * @returns {Promise<CryptoKey>}
 */
async function bodyKey(shared, epk, recipientDh) {
  const raw = await deriveBodyKeyBytes(shared, epk, recipientDh);
  try {
    return await crypto.subtle.importKey("raw", raw, { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
  } finally {
    raw.fill(0);
  }
}

/**
 * Return a copy of `envelope` signed by `identity` (its `sig` replaced).
 * @param {Envelope} envelope
 * @param {Identity} identity
 * @returns {Promise<Envelope>}
 */
export async function signEnvelope(envelope, identity) {
  return envelope.with({ sig: await identity.sign(envelope.signedBytes()) });
}

/**
 * Check a producer's byte-string parameter, or draw random bytes when it is absent.
 * @param {Uint8Array | undefined} value
 * @param {number} size
 * @param {string} name
 * @returns {Uint8Array}
 */
function bytesParam(value, size, name) {
  if (value === undefined || value === null) return crypto.getRandomValues(new Uint8Array(size));
  if (!(value instanceof Uint8Array) || value.length !== size) {
    throw new ProtocolError(`cannot seal: ${name} must be ${size} bytes (a Uint8Array)`);
  }
  return value;
}

/**
 * Encrypt `body` to `recipient`, sign everything with `identity`, return the wire text.
 *
 * `ts` (default: now), `nonce`, `iv` and `ephemeralPrivate` exist for deterministic test
 * vectors; never pass them in production.
 * @param {object} params
 * @param {Identity} params.identity the sender's identity
 * @param {string} params.from the sender's address
 * @param {string} params.to the recipient's address
 * @param {PublicKeys} params.recipient the recipient's public keys
 * @param {string} params.type the message type
 * @param {string} params.callId the call id
 * @param {Record<string, unknown>} params.body a plain object of canonical JSON values
 * @param {number} [params.ts] milliseconds since the epoch
 * @param {Uint8Array} [params.nonce] 16 bytes
 * @param {Uint8Array} [params.iv] 12 bytes
 * @param {Uint8Array} [params.ephemeralPrivate] 32-byte X25519 private key (tests only)
 * @param {number} [params.maxBytes] size limit, {@link MAX_ENVELOPE_BYTES} by default
 * @returns {Promise<string>} the envelope as canonical JSON text
 * @throws {ProtocolError} for a malformed field, a body canonical JSON cannot carry, an
 *   unusable recipient key, or an envelope over the size limit
 */
export async function seal({
  identity, from, to, recipient, type, callId, body, ts, nonce, iv, ephemeralPrivate,
  maxBytes = MAX_ENVELOPE_BYTES,
}) {
  if (!(identity instanceof Identity)) throw new ProtocolError("cannot seal: identity must be an Identity");
  if (!(recipient instanceof PublicKeys)) throw new ProtocolError("cannot seal: recipient must be PublicKeys");
  const problem = headerProblem(type, callId, from, to);
  if (problem) throw new ProtocolError(`cannot seal: ${problem}`);
  const when = ts ?? Date.now();
  if (!isTs(when)) throw new ProtocolError(`cannot seal: ts must be an integer in 0..2^53-1, not ${when}`);
  const nonceBytes = bytesParam(nonce, NONCE_SIZE, "nonce");
  const ivBytes = bytesParam(iv, IV_SIZE, "iv");
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new ProtocolError("cannot seal: body must be a JSON object");
  }
  let plaintext;
  try {
    plaintext = canonical(body);
  } catch (err) {
    throw new ProtocolError(`cannot seal: body: ${/** @type {Error} */ (err).message}`);
  }

  let ephPrivate;
  let epk;
  if (ephemeralPrivate === undefined || ephemeralPrivate === null) {
    const pair = /** @type {CryptoKeyPair} */ (
      await crypto.subtle.generateKey({ name: "X25519" }, false, ["deriveBits"])
    );
    ephPrivate = pair.privateKey;
    epk = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  } else {
    const imported = await importPrivate("X25519", ephemeralPrivate);
    ephPrivate = imported.privateKey;
    epk = imported.publicRaw;
  }
  let shared;
  try {
    shared = await x25519(ephPrivate, recipient.dh);
  } catch (err) {
    throw new ProtocolError(`cannot seal: recipient X25519 key is unusable: ${/** @type {Error} */ (err).message}`);
  }
  const unsigned = new Envelope({
    v: ENVELOPE_VERSION, type, callId, from, to, ts: when, nonce: nonceBytes, epk, iv: ivBytes,
    ct: new Uint8Array(0), sig: new Uint8Array(0),
  });
  const key = await bodyKey(shared, epk, recipient.dh);
  shared.fill(0);
  const ct = new Uint8Array(
    await crypto.subtle.encrypt(
      { name: "AES-GCM", iv: ivBytes, additionalData: unsigned.aad(), tagLength: 128 },
      key,
      plaintext,
    ),
  );
  const signed = await signEnvelope(unsigned.with({ ct }), identity);
  const text = signed.toText();
  const size = UTF8.encode(text).length;
  if (size > maxBytes) {
    throw new ProtocolError(`cannot seal: '${type}' envelope is ${size} bytes, over the limit of ${maxBytes}`);
  }
  return text;
}

/**
 * Return what is wrong with the string header fields (wire names), or "" if nothing.
 * @param {unknown} type
 * @param {unknown} callId
 * @param {unknown} from
 * @param {unknown} to
 * @returns {string}
 */
function headerProblem(type, callId, from, to) {
  if (!isValidType(type)) return "field 'type' must be 1..32 characters of [a-z0-9_-]";
  if (!isValidCallId(callId)) return "field 'call_id' must be 1..64 characters of [A-Za-z0-9_-]";
  if (!isValidAddress(from)) return "field 'from' must be an address: 1..64 characters of [a-z0-9_.-]";
  if (!isValidAddress(to)) return "field 'to' must be an address: 1..64 characters of [a-z0-9_.-]";
  return "";
}

/**
 * @param {string} detail
 * @returns {Rejected}
 */
function badFormat(detail) {
  return new Rejected("bad_format", detail);
}

/**
 * Tell whether a parsed JSON value is an object (not an array, not a float marker).
 * @param {unknown} value
 * @returns {value is Record<string, unknown>}
 */
function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value) && !(value instanceof JsonFloat);
}

/**
 * Name the JSON type of a parsed value, for error messages.
 * @param {unknown} value
 * @returns {string}
 */
function jsonType(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (value instanceof JsonFloat) return "non-integer number";
  return typeof value;
}

/**
 * Raise `bad_format` naming missing or unknown fields.
 * @param {Record<string, unknown>} obj
 * @param {string[]} fields
 * @param {string} what
 */
function exactFields(obj, fields, what) {
  const missing = fields.filter((f) => !Object.hasOwn(obj, f));
  if (missing.length > 0) throw badFormat(`${what}: missing field(s) ${missing.map((f) => `'${f}'`).join(", ")}`);
  const extra = Object.keys(obj).filter((k) => !fields.includes(k)).sort();
  if (extra.length > 0) throw badFormat(`${what}: unknown field(s) ${extra.map((f) => JSON.stringify(f)).join(", ")}`);
}

/**
 * Decode a base64url field and check its length, or raise `bad_format`.
 * @param {Record<string, unknown>} obj
 * @param {string} field
 * @param {number} size
 * @param {boolean} [atLeast]
 * @returns {Uint8Array}
 */
function b64uField(obj, field, size, atLeast = false) {
  const value = obj[field];
  if (typeof value !== "string") throw badFormat(`field '${field}' must be a base64url string`);
  let raw;
  try {
    raw = b64u.decode(value);
  } catch (err) {
    throw badFormat(`field '${field}': ${/** @type {Error} */ (err).message}`);
  }
  if (atLeast ? raw.length < size : raw.length !== size) {
    throw badFormat(`field '${field}' must decode to ${atLeast ? "at least " : ""}${size} bytes, not ${raw.length}`);
  }
  return raw;
}

/**
 * Check the structure of an envelope (receiver rules 1–5 of "Envelope"); nothing is verified.
 * @param {string | Uint8Array | ArrayBuffer | ArrayBufferView} input the wire text or bytes
 * @param {{maxBytes?: number}} [options] size limit, {@link MAX_ENVELOPE_BYTES} by default
 * @returns {Envelope}
 * @throws {Rejected} `oversize`, `bad_json`, `bad_format` or `unknown_version`
 */
export function parseEnvelope(input, { maxBytes = MAX_ENVELOPE_BYTES } = {}) {
  let data = input;
  if (typeof input === "string") {
    if (input.length > maxBytes) {
      // UTF-8 is never shorter than the UTF-16 length: no need to encode a huge string.
      throw new Rejected("oversize", `envelope is at least ${input.length} bytes, over the limit of ${maxBytes}`);
    }
    data = UTF8.encode(input);
    if (!input.isWellFormed()) throw new Rejected("bad_json", "envelope text is not valid Unicode");
  } else if (input instanceof ArrayBuffer) {
    data = new Uint8Array(input);
  } else if (ArrayBuffer.isView(input) && !(input instanceof Uint8Array)) {
    data = new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  } else if (!(input instanceof Uint8Array)) {
    throw new ProtocolError(`parseEnvelope: expected a string or bytes, got ${jsonType(input)}`);
  }
  const bytes = /** @type {Uint8Array} */ (data);
  if (bytes.length > maxBytes) {
    throw new Rejected("oversize", `envelope is ${bytes.length} bytes, over the limit of ${maxBytes}`);
  }
  const obj = parseJson(bytes, { exactNumbers: true });
  if (!isObject(obj)) throw badFormat(`envelope must be a JSON object, not ${jsonType(obj)}`);
  if (!Object.hasOwn(obj, "v")) throw badFormat("envelope: missing field 'v'");
  const version = obj.v;
  if (typeof version !== "number" || !Number.isInteger(version)) throw badFormat("field 'v' must be an integer");
  if (version !== ENVELOPE_VERSION) {
    throw new Rejected("unknown_version", `envelope version ${version} is not supported (only ${ENVELOPE_VERSION})`);
  }
  exactFields(obj, ENVELOPE_FIELDS, "envelope");
  const problem = headerProblem(obj.type, obj.call_id, obj.from, obj.to);
  if (problem) throw badFormat(problem);
  if (!isTs(obj.ts)) throw badFormat("field 'ts' must be an integer in 0..2^53-1 (milliseconds)");
  const nonce = b64uField(obj, "nonce", NONCE_SIZE);
  const body = obj.body;
  if (!isObject(body)) throw badFormat("field 'body' must be an object {epk, iv, ct}");
  exactFields(body, BODY_FIELDS, "body");
  return new Envelope({
    v: version,
    type: /** @type {string} */ (obj.type),
    callId: /** @type {string} */ (obj.call_id),
    from: /** @type {string} */ (obj.from),
    to: /** @type {string} */ (obj.to),
    ts: /** @type {number} */ (obj.ts),
    nonce,
    epk: b64uField(body, "epk", KEY_SIZE),
    iv: b64uField(body, "iv", IV_SIZE),
    ct: b64uField(body, "ct", TAG_SIZE, true),
    sig: b64uField(obj, "sig", SIG_SIZE),
  });
}

/**
 * Verify the envelope's signature with the sender's signing key, over bytes recomputed from the
 * parsed fields (never over the received text).
 * @param {Envelope} envelope
 * @param {PublicKeys} senderKeys
 * @returns {Promise<boolean>}
 */
export async function verify(envelope, senderKeys) {
  if (!(envelope instanceof Envelope)) throw new ProtocolError("verify: expected an Envelope");
  if (!(senderKeys instanceof PublicKeys)) throw new ProtocolError("verify: senderKeys must be PublicKeys");
  try {
    const key = await crypto.subtle.importKey("raw", senderKeys.sign, { name: "Ed25519" }, true, ["verify"]);
    return await crypto.subtle.verify({ name: "Ed25519" }, key, envelope.sig, envelope.signedBytes());
  } catch {
    return false; // a public key WebCrypto refuses verifies nothing
  }
}

/**
 * Decrypt the body of an envelope whose signature verified, as its recipient.
 * @param {Envelope} envelope
 * @param {Identity} identity the recipient's identity
 * @returns {Promise<Record<string, any>>} the body object
 * @throws {Rejected} `decrypt_failed` (wrong key, modified `ct`, `iv` or header, low-order
 *   `epk`) or `bad_format` (the plaintext is not a JSON object of canonical JSON values)
 */
export async function openBody(envelope, identity) {
  if (!(envelope instanceof Envelope)) throw new ProtocolError("openBody: expected an Envelope");
  if (!(identity instanceof Identity)) throw new ProtocolError("openBody: identity must be an Identity");
  const what = `body of '${envelope.type}' from '${envelope.from}'`;
  const claimed = envelope.claimed();
  let shared;
  try {
    shared = await identity.dh(envelope.epk);
  } catch (err) {
    throw new Rejected("decrypt_failed", `${what}: ${/** @type {Error} */ (err).message}`, claimed);
  }
  const key = await bodyKey(shared, envelope.epk, identity.publicKeys.dh);
  shared.fill(0);
  let plaintext;
  try {
    plaintext = new Uint8Array(
      await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: envelope.iv, additionalData: envelope.aad(), tagLength: 128 },
        key,
        envelope.ct,
      ),
    );
  } catch {
    const fp = await identity.fingerprint();
    throw new Rejected("decrypt_failed", `${what} does not decrypt with key ${fp}`, claimed);
  }
  let body;
  try {
    body = parseJson(plaintext, { exactNumbers: true });
  } catch (err) {
    throw new Rejected("bad_format", `${what} is not valid JSON: ${/** @type {Rejected} */ (err).detail}`, claimed);
  }
  if (!isObject(body)) throw new Rejected("bad_format", `${what} must be a JSON object, not ${jsonType(body)}`, claimed);
  try {
    canonical(body);
  } catch (err) {
    throw new Rejected("bad_format", `${what}: ${/** @type {Error} */ (err).message}`, claimed);
  }
  return body;
}
