/**
 * The signed site directory (docs/protocol.md, "Site directory"; services/signaling/
 * directory.py is the Python side): every endpoint of a building, signed by the site admin
 * key that the phone's pairing link carries (`admin_key`).
 *
 * The phone accepts a directory only when its `sig` verifies with that key over the context
 * and the canonical JSON without `sig`, it names the phone's site and its `version` is above
 * the highest one the phone ever accepted (the caller keeps that floor). From an accepted one
 * it trusts what `Directory.peers_of` gives a phone: every door station and its own flat's
 * members, with the directory's keys.
 * @module protocol/directory
 */

import * as b64u from "./b64u.js";
import { canonical, parseJson } from "./canonical.js";
import { SIG_SIZE, isValidAddress } from "./envelope.js";
import { ProtocolError } from "./errors.js";
import { PublicKeys, concatBytes } from "./keys.js";

/** Prefix of the bytes a directory's signature covers; then the canonical JSON without sig. */
export const DIRECTORY_SIG_CONTEXT = new TextEncoder().encode("callbox/v1 directory\n");
/** The largest directory document (the site broker's packet limit less the header). */
export const MAX_DIRECTORY_BYTES = 512 * 1024 - 4096;
const ROLES = new Set(["door", "indoor", "web"]);
const RINGABLE = new Set(["indoor", "web"]);
const FLAT = /^[A-Za-z0-9_.-]{0,32}$/;
const FIELDS = ["entries", "issued_at_ms", "site", "v", "version"];
const ENTRY_FIELDS = ["address", "flat", "keys", "name", "rights", "role"];

/** A directory refused, with the reason the Python side logs (`malformed`, `unsigned`, …). */
export class DirectoryRefused extends ProtocolError {
  /**
   * @param {string} problem malformed, unsigned, bad_signature, other_site or rollback
   * @param {string} detail
   */
  constructor(problem, detail) {
    super(`directory refused (${problem}): ${detail}`);
    this.name = "DirectoryRefused";
    this.problem = problem;
  }
}

/**
 * The 32 bytes of an admin public key in base64url.
 * @param {string} text
 * @returns {Uint8Array}
 * @throws {ProtocolError} when it is not one
 */
export function adminKeyBytes(text) {
  let raw;
  try {
    raw = b64u.decode(text);
  } catch (err) {
    throw new ProtocolError(`admin key is not base64url: ${err.message}`);
  }
  if (raw.length !== 32) throw new ProtocolError(`admin key is ${raw.length} bytes, not 32`);
  return raw;
}

function sameFields(obj, expected) {
  return Object.keys(obj).sort().join(",") === expected.join(",");
}

function readEntry(obj) {
  const bad = (what) => {
    throw new DirectoryRefused("malformed", `entry ${JSON.stringify(obj?.address)}: ${what}`);
  };
  if (!obj || typeof obj !== "object" || Array.isArray(obj)) bad("not an object");
  if (!sameFields(obj, ENTRY_FIELDS)) bad(`fields ${Object.keys(obj).sort()}`);
  for (const key of ["address", "name", "role", "flat"]) {
    if (typeof obj[key] !== "string") bad(`${key} is not a string`);
  }
  if (!isValidAddress(obj.address)) bad("bad address");
  if (!ROLES.has(obj.role)) bad(`role ${obj.role}`);
  if (!FLAT.test(obj.flat)) bad(`flat ${obj.flat}`);
  if (!Array.isArray(obj.rights) || !obj.rights.every((r) => r === "unlock" || r === "monitor")) {
    bad("rights");
  }
  let keys;
  try {
    keys = PublicKeys.fromJson(obj.keys);
  } catch (err) {
    bad(`keys: ${err.message}`);
  }
  return {
    address: obj.address,
    name: obj.name || obj.address,
    role: obj.role,
    flat: obj.flat,
    rights: [...obj.rights],
    keys,
  };
}

/**
 * Parse and verify a published directory (the version floor is the caller's).
 * @param {Uint8Array} payload the retained message
 * @param {{site: string, adminKey: Uint8Array}} pinned
 * @returns {Promise<{site: string, version: number, issuedAtMs: number, entries: object[]}>}
 * @throws {DirectoryRefused}
 */
export async function readDirectory(payload, { site, adminKey }) {
  if (payload.length > MAX_DIRECTORY_BYTES) {
    throw new DirectoryRefused("malformed", `${payload.length} bytes`);
  }
  let fields;
  try {
    fields = parseJson(new TextDecoder("utf-8", { fatal: true }).decode(payload));
  } catch (err) {
    throw new DirectoryRefused("malformed", `not JSON: ${err.message}`);
  }
  if (!fields || typeof fields !== "object" || Array.isArray(fields)) {
    throw new DirectoryRefused("malformed", "not a JSON object");
  }
  if (!("sig" in fields)) throw new DirectoryRefused("unsigned", "it has no sig");
  let sig = new Uint8Array();
  try {
    if (typeof fields.sig === "string") sig = b64u.decode(fields.sig);
  } catch {
    sig = new Uint8Array();
  }
  if (sig.length !== SIG_SIZE) {
    throw new DirectoryRefused("bad_signature", `sig is not ${SIG_SIZE} base64url bytes`);
  }
  const unsigned = Object.fromEntries(Object.entries(fields).filter(([k]) => k !== "sig"));
  let signed;
  try {
    signed = concatBytes(DIRECTORY_SIG_CONTEXT, canonical(unsigned));
  } catch (err) {
    throw new DirectoryRefused("malformed", err.message);
  }
  let valid = false;
  try {
    const key = await crypto.subtle.importKey("raw", adminKey, { name: "Ed25519" }, true, [
      "verify",
    ]);
    valid = await crypto.subtle.verify({ name: "Ed25519" }, key, sig, signed);
  } catch {
    valid = false;
  }
  if (!valid) {
    throw new DirectoryRefused(
      "bad_signature",
      `its signature does not verify with the pinned admin key ${b64u.encode(adminKey)}`,
    );
  }
  if (!sameFields(unsigned, FIELDS)) {
    throw new DirectoryRefused("malformed", `fields ${Object.keys(unsigned).sort()}`);
  }
  if (unsigned.v !== 1) throw new DirectoryRefused("malformed", `format v=${unsigned.v}`);
  const { version, issued_at_ms: issuedAtMs, entries } = unsigned;
  if (!Number.isSafeInteger(version) || version < 1 || !Number.isSafeInteger(issuedAtMs)) {
    throw new DirectoryRefused("malformed", "version and issued_at_ms must be integers");
  }
  if (typeof unsigned.site !== "string" || !Array.isArray(entries)) {
    throw new DirectoryRefused("malformed", "site is not a string or entries not a list");
  }
  if (unsigned.site !== site) {
    throw new DirectoryRefused("other_site", `it is for site ${unsigned.site}, this is ${site}`);
  }
  const read = entries.map(readEntry);
  if (new Set(read.map((e) => e.address)).size !== read.length) {
    throw new DirectoryRefused("malformed", "an address is listed twice");
  }
  return { site: unsigned.site, version, issuedAtMs, entries: read };
}

/**
 * The entries a phone at `address` follows and trusts (`Directory.peers_of` without targets):
 * the members of its own flat and, a phone being ringable, every door station. Not itself;
 * nothing while the directory does not list the phone.
 * @param {{entries: object[]}} directory
 * @param {string} address
 * @returns {object[]}
 */
export function peersOf(directory, address) {
  const own = directory.entries.find((e) => e.address === address);
  return directory.entries.filter(
    (e) =>
      e.address !== address &&
      ((own?.flat && e.flat === own.flat) ||
        (e.role === "door" && own && RINGABLE.has(own.role))),
  );
}
