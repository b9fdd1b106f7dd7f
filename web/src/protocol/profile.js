/**
 * The retained profile: name, role, public keys, and a signature by the keys it advertises
 * (docs/protocol.md, "Profiles are signed by the keys they advertise"; services/signaling/
 * profile.py is the Python side).
 *
 * Anyone with an endpoint's broker login can publish on its profile topic: only a profile
 * whose `sig` verifies with the signing key it advertises may tell a receiver that a pinned
 * peer now has another key.
 * @module protocol/profile
 */

import * as b64u from "./b64u.js";
import { canonical } from "./canonical.js";
import { SIG_SIZE } from "./envelope.js";
import { ProtocolError } from "./errors.js";
import { PublicKeys, concatBytes } from "./keys.js";

/** Prefix of the bytes a profile's signature covers: then the address, a newline, the JSON. */
export const PROFILE_SIG_CONTEXT = new TextEncoder().encode("callbox/v1 profile\n");

/**
 * The bytes a profile's signature covers: the context, `address`, a newline, and the
 * canonical JSON of the profile without `sig`.
 * @param {string} address
 * @param {Record<string, unknown>} fields
 * @returns {Uint8Array}
 */
export function profileSignedBytes(address, fields) {
  const unsigned = Object.fromEntries(Object.entries(fields).filter(([k]) => k !== "sig"));
  return concatBytes(
    PROFILE_SIG_CONTEXT,
    new TextEncoder().encode(`${address}\n`),
    canonical(unsigned),
  );
}

/**
 * The profile `address` publishes: its fields with `sig`, signed by `identity`.
 * @param {import("./identity.js").Identity} identity
 * @param {string} address
 * @param {{name: string, role: string}} about
 * @returns {Promise<Record<string, unknown>>}
 */
export async function signedProfile(identity, address, { name, role }) {
  /** @type {Record<string, unknown>} */
  const fields = { name, role, keys: identity.publicKeys.toJson() };
  fields.sig = b64u.encode(await identity.sign(profileSignedBytes(address, fields)));
  return fields;
}

/**
 * Read `address`'s profile: its keys and whether it is signed by them.
 * @param {string} address
 * @param {Record<string, any>} fields the parsed profile
 * @returns {Promise<{keys: PublicKeys, signed: boolean}>}
 * @throws {ProtocolError} for a profile without keys or whose `sig` does not verify (a forgery,
 *   or one signed for another address): a receiver ignores it
 */
export async function readProfile(address, fields) {
  if (!fields || typeof fields !== "object" || Array.isArray(fields)) {
    throw new ProtocolError(`profile of ${address} is not a JSON object`);
  }
  const keys = PublicKeys.fromJson(fields.keys);
  if (!("sig" in fields)) return { keys, signed: false };
  let sig = new Uint8Array();
  try {
    if (typeof fields.sig === "string") sig = b64u.decode(fields.sig);
  } catch {
    sig = new Uint8Array();
  }
  if (sig.length !== SIG_SIZE) {
    throw new ProtocolError(`profile of ${address}: sig is not ${SIG_SIZE} base64url bytes`);
  }
  let valid = false;
  try {
    const key = await crypto.subtle.importKey("raw", keys.sign, { name: "Ed25519" }, true, [
      "verify",
    ]);
    valid = await crypto.subtle.verify(
      { name: "Ed25519" },
      key,
      sig,
      profileSignedBytes(address, fields),
    );
  } catch {
    valid = false; // a key WebCrypto refuses verifies nothing
  }
  if (!valid) {
    throw new ProtocolError(`profile of ${address}: its sig does not verify with its keys`);
  }
  return { keys, signed: true };
}
