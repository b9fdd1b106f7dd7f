/**
 * This endpoint's identity: an Ed25519 signing key and an X25519 key agreement key, held as
 * WebCrypto `CryptoKey`s (docs/protocol.md, "Identity and fingerprints").
 *
 * A `CryptoKey` is structured-cloneable, so the phone stores `identity.toStored()` in IndexedDB
 * as is and rebuilds it with `Identity.fromStored`; generated private keys are non-extractable.
 * @module protocol/identity
 */

import { ProtocolError } from "./errors.js";
import { KEY_SIZE, PublicKeys, concatBytes, fromHex } from "./keys.js";
import * as b64u from "./b64u.js";

/** PKCS#8 DER prefixes of raw 32-byte private keys (the raw key follows). */
export const PKCS8_PREFIX = Object.freeze({
  Ed25519: fromHex("302e020100300506032b657004220420"),
  X25519: fromHex("302e020100300506032b656e04220420"),
});

const USAGES = Object.freeze({ Ed25519: ["sign"], X25519: ["deriveBits"] });

/**
 * Return the PKCS#8 DER of a raw private key.
 * @param {"Ed25519" | "X25519"} algorithm
 * @param {Uint8Array} raw the 32-byte Ed25519 seed or X25519 private key
 * @returns {Uint8Array}
 */
export function pkcs8(algorithm, raw) {
  const prefix = PKCS8_PREFIX[algorithm];
  if (prefix === undefined) throw new ProtocolError(`pkcs8: unknown algorithm ${JSON.stringify(algorithm)}`);
  if (!(raw instanceof Uint8Array) || raw.length !== KEY_SIZE) {
    throw new ProtocolError(`${algorithm} private key must be ${KEY_SIZE} raw bytes`);
  }
  return concatBytes(prefix, raw);
}

/**
 * Import a raw private key (through PKCS#8) and compute its public key.
 * @param {"Ed25519" | "X25519"} algorithm
 * @param {Uint8Array} raw 32 bytes
 * @param {boolean} [extractable] whether the returned private key may be exported
 * @returns {Promise<{privateKey: CryptoKey, publicRaw: Uint8Array}>}
 */
export async function importPrivate(algorithm, raw, extractable = false) {
  const der = pkcs8(algorithm, raw);
  const subtle = crypto.subtle;
  const usages = /** @type {KeyUsage[]} */ (USAGES[algorithm]);
  let probe;
  try {
    probe = await subtle.importKey("pkcs8", der, { name: algorithm }, true, usages);
  } catch (err) {
    throw new ProtocolError(`cannot import the ${algorithm} private key: ${/** @type {Error} */ (err).message}`);
  }
  const jwk = await subtle.exportKey("jwk", probe);
  const publicRaw = b64u.decode(/** @type {string} */ (jwk.x));
  const privateKey = extractable ? probe : await subtle.importKey("pkcs8", der, { name: algorithm }, false, usages);
  return { privateKey, publicRaw };
}

/**
 * X25519 key agreement; refuses the all-zero result of a low-order public key.
 * @param {CryptoKey} privateKey an X25519 private key with usage `deriveBits`
 * @param {Uint8Array} publicRaw the peer's 32-byte X25519 public key
 * @returns {Promise<Uint8Array>} the 32-byte shared secret
 * @throws {ProtocolError} for a malformed or low-order public key
 */
export async function x25519(privateKey, publicRaw) {
  if (!(publicRaw instanceof Uint8Array) || publicRaw.length !== KEY_SIZE) {
    throw new ProtocolError(`X25519 public key must be ${KEY_SIZE} raw bytes`);
  }
  let shared;
  try {
    const peer = await crypto.subtle.importKey("raw", publicRaw, { name: "X25519" }, true, []);
    shared = new Uint8Array(
      await crypto.subtle.deriveBits({ name: "X25519", public: peer }, privateKey, 256),
    );
  } catch (err) {
    throw new ProtocolError(`X25519 key agreement failed: ${/** @type {Error} */ (err).message || err}`);
  }
  if (shared.every((b) => b === 0)) {
    throw new ProtocolError("X25519 key agreement failed: all-zero shared secret (low-order public key)");
  }
  return shared;
}

/** The private keys of this endpoint and the public keys peers pin for it. */
export class Identity {
  /**
   * Wrap existing keys (use {@link Identity.generate}, {@link Identity.fromStored} or
   * {@link Identity.fromPrivate} rather than calling this directly).
   * @param {CryptoKey} signKey Ed25519 private key, usage `sign`
   * @param {CryptoKey} dhKey X25519 private key, usage `deriveBits`
   * @param {PublicKeys} publicKeys the matching public keys
   */
  constructor(signKey, dhKey, publicKeys) {
    if (!(publicKeys instanceof PublicKeys)) throw new ProtocolError("Identity: publicKeys must be PublicKeys");
    checkKey(signKey, "Ed25519", "private", "signKey");
    checkKey(dhKey, "X25519", "private", "dhKey");
    /** @type {PublicKeys} */
    this.publicKeys = publicKeys;
    /** @type {CryptoKey} */
    this.signKey = signKey;
    /** @type {CryptoKey} */
    this.dhKey = dhKey;
    Object.freeze(this);
  }

  /**
   * Create a fresh random identity whose private keys are non-extractable.
   * @returns {Promise<Identity>}
   */
  static async generate() {
    const subtle = crypto.subtle;
    const sign = /** @type {CryptoKeyPair} */ (await subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]));
    const dh = /** @type {CryptoKeyPair} */ (await subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]));
    const publicKeys = new PublicKeys(
      new Uint8Array(await subtle.exportKey("raw", sign.publicKey)),
      new Uint8Array(await subtle.exportKey("raw", dh.publicKey)),
    );
    return new Identity(sign.privateKey, dh.privateKey, publicKeys);
  }

  /**
   * Build an identity from raw private keys (test vectors, interop tests); the resulting
   * private keys are non-extractable.
   * @param {Uint8Array} signSeed32 the 32-byte Ed25519 seed
   * @param {Uint8Array} dhPriv32 the 32-byte X25519 private key
   * @returns {Promise<Identity>}
   */
  static async fromPrivate(signSeed32, dhPriv32) {
    const sign = await importPrivate("Ed25519", signSeed32);
    const dh = await importPrivate("X25519", dhPriv32);
    return new Identity(sign.privateKey, dh.privateKey, new PublicKeys(sign.publicRaw, dh.publicRaw));
  }

  /**
   * Return a structured-cloneable object to keep in IndexedDB.
   * @returns {{signKey: CryptoKey, dhKey: CryptoKey, publicKeys: {sign: string, dh: string}}}
   */
  toStored() {
    return { signKey: this.signKey, dhKey: this.dhKey, publicKeys: this.publicKeys.toJson() };
  }

  /**
   * Rebuild an identity from what {@link Identity#toStored} returned.
   * @param {{signKey: CryptoKey, dhKey: CryptoKey, publicKeys: {sign: string, dh: string}}} stored
   * @returns {Identity}
   */
  static fromStored(stored) {
    if (stored === null || typeof stored !== "object") throw new ProtocolError("stored identity: expected an object");
    return new Identity(stored.signKey, stored.dhKey, PublicKeys.fromJson(stored.publicKeys));
  }

  /**
   * Sign bytes with the Ed25519 key.
   * @param {Uint8Array} data
   * @returns {Promise<Uint8Array>} the 64-byte signature
   */
  async sign(data) {
    return new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, this.signKey, data));
  }

  /**
   * X25519 key agreement with a peer's raw public key (see {@link x25519}).
   * @param {Uint8Array} peerPublic 32 bytes
   * @returns {Promise<Uint8Array>} the 32-byte shared secret
   */
  dh(peerPublic) {
    return x25519(this.dhKey, peerPublic);
  }

  /**
   * The fingerprint of this identity's public keys.
   * @returns {Promise<string>}
   */
  fingerprint() {
    return this.publicKeys.fingerprint();
  }
}

/**
 * Refuse something that is not a CryptoKey of the expected algorithm and type.
 * @param {unknown} key
 * @param {string} algorithm
 * @param {string} type
 * @param {string} what
 */
function checkKey(key, algorithm, type, what) {
  if (!(key instanceof CryptoKey) || key.algorithm.name !== algorithm || key.type !== type) {
    throw new ProtocolError(`Identity: ${what} must be a ${type} ${algorithm} CryptoKey`);
  }
}
