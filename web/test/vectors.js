/**
 * In-browser runner of the protocol test vectors (tests/vectors/envelope_v1.json) against the
 * WebCrypto protocol core in web/src/protocol/.
 *
 * Sets `window.runVectors(vectors) -> {passed: [name], failed: [{name, error}]}` and two interop
 * helpers for the Python side: `window.sealForTest(params) -> envelope text` and
 * `window.openForTest(params) -> message`.
 * @module test/vectors
 */

import * as b64u from "../src/protocol/b64u.js";
import { canonical, canonicalText, parseJson } from "../src/protocol/canonical.js";
import { ProtocolError, REJECT_REASONS, Rejected } from "../src/protocol/errors.js";
import {
  AAD_CONTEXT,
  Envelope,
  HKDF_INFO,
  MAX_ENVELOPE_BYTES,
  MESSAGE_TYPES,
  SIG_CONTEXT,
  deriveBodyKeyBytes,
  openBody,
  parseEnvelope,
  seal,
  signEnvelope,
  verify,
} from "../src/protocol/envelope.js";
import { Identity, importPrivate, pkcs8, x25519 } from "../src/protocol/identity.js";
import {
  PublicKeys,
  concatBytes,
  formatFingerprint,
  fromHex,
  normalizeFingerprint,
  safetyNumber,
  toHex,
} from "../src/protocol/keys.js";
import {
  DIRECTORY_SIG_CONTEXT, DirectoryRefused, adminKeyBytes, peersOf, readDirectory,
} from "../src/protocol/directory.js";
import { Receiver } from "../src/protocol/receiver.js";
import { ReplayGuard } from "../src/protocol/replay.js";

const UTF8 = new TextEncoder();

// ------------------------------------------------------------------------------ assertions

/**
 * Throw unless `actual` and `expected` are identical (deep for plain JSON data and bytes).
 * @param {unknown} actual
 * @param {unknown} expected
 * @param {string} what
 */
function eq(actual, expected, what) {
  const a = actual instanceof Uint8Array ? toHex(actual) : JSON.stringify(actual);
  const e = expected instanceof Uint8Array ? toHex(expected) : JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: expected ${e}, got ${a}`);
}

/**
 * Throw unless `fn` rejects with a {@link Rejected} of `reason`.
 * @param {() => unknown} fn
 * @param {string} reason
 * @returns {Promise<Rejected>}
 */
async function rejects(fn, reason) {
  try {
    await fn();
  } catch (err) {
    if (err instanceof Rejected && err.reason === reason) return err;
    throw new Error(`expected Rejected(${reason}), got ${err instanceof Error ? err.stack : err}`);
  }
  throw new Error(`expected Rejected(${reason}), but it was accepted`);
}

/**
 * Throw unless `fn` throws a {@link ProtocolError}.
 * @param {() => unknown} fn
 * @param {string} [mentions] a text the error message must contain
 * @returns {Promise<ProtocolError>}
 */
async function misuse(fn, mentions) {
  try {
    await fn();
  } catch (err) {
    if (err instanceof ProtocolError && (!mentions || err.message.includes(mentions))) return err;
    throw new Error(`expected ProtocolError(…${mentions ?? ""}…), got ${err instanceof Error ? err.stack : err}`);
  }
  throw new Error("expected a ProtocolError, but it was accepted");
}

// ------------------------------------------------------------------------------ helpers

/** A contacts object for a Receiver. */
class TestContacts {
  /**
   * @param {Record<string, PublicKeys>} pinned
   * @param {Record<string, PublicKeys>} [advertised]
   */
  constructor(pinned, advertised = {}) {
    this.pinnedKeys = pinned;
    this.advertisedKeys = advertised;
  }

  /** @param {string} address */
  pinned(address) {
    return this.pinnedKeys[address] ?? null;
  }

  /** @param {string} address */
  advertised(address) {
    return this.advertisedKeys[address] ?? null;
  }
}

/**
 * Build an identity from a vectors party (or any `{sign_private_hex, dh_private_hex}`).
 * @param {{sign_private_hex: string, dh_private_hex: string}} party
 * @returns {Promise<Identity>}
 */
function partyIdentity(party) {
  return Identity.fromPrivate(fromHex(party.sign_private_hex), fromHex(party.dh_private_hex));
}

/**
 * Re-serialize a JSON text with some top-level (or body) fields changed or deleted.
 * @param {string} text
 * @param {Record<string, unknown>} change `undefined` deletes the field
 * @param {boolean} [inBody]
 * @returns {string}
 */
function mutated(text, change, inBody = false) {
  const obj = JSON.parse(text);
  const target = inBody ? obj.body : obj;
  for (const [key, value] of Object.entries(change)) {
    if (value === undefined) delete target[key];
    else target[key] = value;
  }
  return JSON.stringify(obj);
}

/**
 * Return a copy of bytes with one byte flipped.
 * @param {Uint8Array} bytes
 * @param {number} [index]
 * @returns {Uint8Array}
 */
function flip(bytes, index = 0) {
  const out = Uint8Array.from(bytes);
  out[index] ^= 0x01;
  return out;
}

/**
 * Encrypt arbitrary plaintext bytes into an envelope signed by `sender` (to test what the
 * receiver does with a body `seal` would refuse to produce).
 * @param {Envelope} template header fields to keep
 * @param {Identity} sender
 * @param {PublicKeys} recipient
 * @param {Uint8Array} plaintext
 * @returns {Promise<string>}
 */
async function sealRaw(template, sender, recipient, plaintext) {
  const eph = /** @type {CryptoKeyPair} */ (await crypto.subtle.generateKey({ name: "X25519" }, true, ["deriveBits"]));
  const epk = new Uint8Array(await crypto.subtle.exportKey("raw", eph.publicKey));
  const shared = await x25519(eph.privateKey, recipient.dh);
  const keyBytes = await deriveBodyKeyBytes(shared, epk, recipient.dh);
  const key = await crypto.subtle.importKey("raw", keyBytes, "AES-GCM", false, ["encrypt"]);
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const nonce = crypto.getRandomValues(new Uint8Array(16));
  const unsigned = template.with({ nonce, epk, iv });
  const ct = new Uint8Array(
    await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: unsigned.aad() }, key, plaintext),
  );
  return (await signEnvelope(unsigned.with({ ct }), sender)).toText();
}

// ------------------------------------------------------------------------------ the runner

/**
 * Run every check against the parsed vectors file.
 * @param {any} vectors the parsed tests/vectors/envelope_v1.json
 * @returns {Promise<{passed: string[], failed: {name: string, error: string}[]}>}
 */
async function runVectors(vectors) {
  /** @type {string[]} */
  const passed = [];
  /** @type {{name: string, error: string}[]} */
  const failed = [];
  /**
   * @param {string} name
   * @param {() => unknown} fn
   */
  const check = async (name, fn) => {
    try {
      await fn();
      passed.push(name);
    } catch (err) {
      failed.push({ name, error: err instanceof Error ? `${err.message}\n${err.stack}` : String(err) });
    }
  };

  const inputs = vectors.inputs;
  const derived = vectors.derived;
  const sender = await partyIdentity(vectors.sender);
  const recipient = await partyIdentity(vectors.recipient);
  const senderKeys = PublicKeys.fromJson(vectors.sender.public_keys);
  const recipientKeys = PublicKeys.fromJson(vectors.recipient.public_keys);
  const atVectorTime = () => new ReplayGuard({ wallClock: () => inputs.ts });
  /**
   * @param {object} [options]
   * @param {Record<string, PublicKeys>} [options.pinned]
   * @param {Record<string, PublicKeys>} [options.advertised]
   * @param {ReplayGuard} [options.replay]
   * @param {string} [options.address]
   */
  const receiver = (options = {}) =>
    new Receiver({
      identity: recipient,
      address: options.address ?? vectors.recipient.address,
      contacts: new TestContacts(options.pinned ?? { [vectors.sender.address]: senderKeys }, options.advertised),
      replay: options.replay ?? atVectorTime(),
      inviteLimit: null,
    });
  const envelopeText = vectors.envelope;
  const parsedVector = parseEnvelope(envelopeText);

  await check("errors.reasons", () => {
    eq([...REJECT_REASONS].sort(), [
      "bad_format", "bad_json", "bad_signature", "decrypt_failed", "key_changed", "oversize",
      "rate_limited", "replay", "stale", "unknown_sender", "unknown_type", "unknown_version",
      "wrong_call", "wrong_recipient",
    ], "rejection reasons");
    const err = new Rejected("stale", "too old");
    eq(err.message, "message rejected (stale): too old", "message");
  });

  // ---------------------------------------------------------------- keys
  for (const role of ["sender", "recipient"]) {
    const party = vectors[role];
    const identity = role === "sender" ? sender : recipient;
    await check(`keys.${role}.pkcs8`, () => {
      eq(pkcs8("Ed25519", fromHex(party.sign_private_hex)), fromHex(party.sign_private_pkcs8_hex), "Ed25519 PKCS#8");
      eq(pkcs8("X25519", fromHex(party.dh_private_hex)), fromHex(party.dh_private_pkcs8_hex), "X25519 PKCS#8");
    });
    await check(`keys.${role}.public_from_pkcs8`, async () => {
      const der = fromHex(party.sign_private_pkcs8_hex);
      const signKey = await crypto.subtle.importKey("pkcs8", der, { name: "Ed25519" }, true, ["sign"]);
      const signJwk = await crypto.subtle.exportKey("jwk", signKey);
      eq(b64u.decode(/** @type {string} */ (signJwk.x)), fromHex(party.sign_public_hex), "Ed25519 public");
      const dhDer = fromHex(party.dh_private_pkcs8_hex);
      const dhKey = await crypto.subtle.importKey("pkcs8", dhDer, { name: "X25519" }, true, ["deriveBits"]);
      const dhJwk = await crypto.subtle.exportKey("jwk", dhKey);
      eq(b64u.decode(/** @type {string} */ (dhJwk.x)), fromHex(party.dh_public_hex), "X25519 public");
      eq(identity.publicKeys.sign, fromHex(party.sign_public_hex), "Identity.fromPrivate sign");
      eq(identity.publicKeys.dh, fromHex(party.dh_public_hex), "Identity.fromPrivate dh");
      if (identity.signKey.extractable || identity.dhKey.extractable) throw new Error("private keys are extractable");
    });
    await check(`keys.${role}.public_json`, () => {
      eq(identity.publicKeys.toJson(), party.public_keys, "toJson");
      const fromJson = PublicKeys.fromJson(party.public_keys);
      if (!fromJson.equals(identity.publicKeys)) throw new Error("fromJson differs from the identity's keys");
      eq(canonicalText(identity.publicKeys.toJson()),
        `{"dh":"${party.public_keys.dh}","sign":"${party.public_keys.sign}"}`, "canonical public keys JSON");
      const viaText = PublicKeys.fromKeyText(identity.publicKeys.keyText());
      if (!viaText.equals(identity.publicKeys)) throw new Error("keyText round trip differs");
      eq(identity.publicKeys.keyText(), `${party.public_keys.sign}.${party.public_keys.dh}`, "keyText");
    });
    await check(`keys.${role}.fingerprint`, async () => {
      eq(await identity.publicKeys.fingerprint(), party.fingerprint, "fingerprint");
      eq(normalizeFingerprint(party.fingerprint.toUpperCase()), party.fingerprint.replaceAll(" ", ""), "normalize");
      eq(formatFingerprint(party.fingerprint.replaceAll(" ", ":")), party.fingerprint, "format");
    });
  }
  await check("keys.safety_number", async () => {
    eq(await safetyNumber(senderKeys, recipientKeys), vectors.safety_number, "safety number (a, b)");
    eq(await safetyNumber(recipientKeys, senderKeys), vectors.safety_number, "safety number (b, a)");
  });
  await check("keys.public_json_refusals", async () => {
    const good = vectors.sender.public_keys;
    await misuse(() => PublicKeys.fromJson({ sign: good.sign }), "'dh' is missing");
    await misuse(() => PublicKeys.fromJson({ ...good, extra: "x" }), "unknown field(s) 'extra'");
    await misuse(() => PublicKeys.fromJson({ ...good, dh: good.dh + "=" }), "'dh'");
    await misuse(() => PublicKeys.fromJson({ ...good, sign: b64u.encode(new Uint8Array(31)) }), "'sign' must decode to 32 bytes");
    await misuse(() => PublicKeys.fromJson({ ...good, sign: 7 }), "'sign' must be a base64url string");
    await misuse(() => PublicKeys.fromJson([good.sign, good.dh]), "JSON object");
    await misuse(() => normalizeFingerprint("4e93 5d74"), "32 hex digits");
    await misuse(() => PublicKeys.fromKeyText("abc"), "'<sign>.<dh>'");
  });

  // ---------------------------------------------------------------- derivation steps
  const nonce = fromHex(inputs.nonce_hex);
  const iv = fromHex(inputs.iv_hex);
  const ephPrivate = fromHex(inputs.ephemeral_private_hex);
  const template = new Envelope({
    v: 1, type: inputs.type, callId: inputs.call_id, from: inputs.from, to: inputs.to, ts: inputs.ts,
    nonce, epk: new Uint8Array(32), iv, ct: new Uint8Array(0), sig: new Uint8Array(0),
  });
  await check("derive.header_canonical", () => {
    eq(template.header(), derived.header, "header object");
    eq(canonicalText(template.header()), derived.canonical_header, "canonical header");
  });
  await check("derive.aad", () => {
    eq(template.aad(), fromHex(derived.aad_hex), "AAD");
    eq(AAD_CONTEXT, fromHex("63616c6c626f782f7631206161640a"), "AAD prefix");
  });
  const eph = await importPrivate("X25519", ephPrivate);
  await check("derive.ephemeral_public", () => {
    eq(eph.publicRaw, fromHex(derived.ephemeral_public_hex), "ephemeral public key");
  });
  const shared = await x25519(eph.privateKey, recipientKeys.dh);
  await check("derive.shared_secret", async () => {
    eq(shared, fromHex(derived.shared_secret_hex), "X25519(eph, recipient)");
    eq(await recipient.dh(eph.publicRaw), fromHex(derived.shared_secret_hex), "X25519(recipient, epk)");
  });
  const bodyKeyBytes = await deriveBodyKeyBytes(shared, eph.publicRaw, recipientKeys.dh);
  await check("derive.hkdf_key", () => {
    eq(concatBytes(eph.publicRaw, recipientKeys.dh), fromHex(derived.hkdf_salt_hex), "HKDF salt");
    eq(HKDF_INFO, fromHex(derived.hkdf_info_hex), "HKDF info");
    eq(bodyKeyBytes, fromHex(derived.body_key_hex), "body key");
  });
  await check("derive.canonical_body", () => {
    eq(canonicalText(inputs.body), derived.canonical_body, "canonical body");
    eq(canonical(inputs.body), UTF8.encode(derived.canonical_body), "canonical body bytes");
  });
  const withEpk = template.with({ epk: eph.publicRaw });
  const aesKey = await crypto.subtle.importKey("raw", bodyKeyBytes, "AES-GCM", false, ["encrypt"]);
  const ct = new Uint8Array(
    await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: withEpk.aad() }, aesKey, canonical(inputs.body)),
  );
  await check("derive.ct", () => {
    eq(b64u.encode(ct), derived.ct_b64u, "ct");
  });
  const encrypted = withEpk.with({ ct });
  await check("derive.canonical_signed", () => {
    eq(canonicalText(encrypted.signedObject()), derived.canonical_signed, "canonical signed object");
  });
  await check("derive.signed_bytes", () => {
    eq(encrypted.signedBytes(), fromHex(derived.signed_bytes_hex), "signed bytes");
    eq(SIG_CONTEXT, fromHex("63616c6c626f782f7631207369670a"), "signature prefix");
  });
  await check("derive.sig", async () => {
    eq(b64u.encode(await sender.sign(encrypted.signedBytes())), derived.sig_b64u, "sig");
  });

  // ---------------------------------------------------------------- seal and open
  await check("seal.envelope_bytes", async () => {
    const text = await seal({
      identity: sender, from: inputs.from, to: inputs.to, recipient: recipientKeys, type: inputs.type,
      callId: inputs.call_id, body: inputs.body, ts: inputs.ts, nonce, iv, ephemeralPrivate: ephPrivate,
    });
    eq(text, envelopeText, "sealed envelope");
  });
  await check("open.parse", () => {
    const env = parsedVector;
    eq([env.v, env.type, env.callId, env.from, env.to, env.ts],
      [1, inputs.type, inputs.call_id, inputs.from, inputs.to, inputs.ts], "header fields");
    eq(env.nonce, nonce, "nonce");
    eq(env.epk, fromHex(derived.ephemeral_public_hex), "epk");
    eq(env.iv, iv, "iv");
    eq(b64u.encode(env.ct), derived.ct_b64u, "ct");
    eq(b64u.encode(env.sig), derived.sig_b64u, "sig");
    eq(env.toText(), envelopeText, "re-serialized");
    eq(parseEnvelope(UTF8.encode(envelopeText)).toText(), envelopeText, "parsed from bytes");
  });
  await check("open.verify", async () => {
    if (!(await verify(parsedVector, senderKeys))) throw new Error("does not verify with the sender's keys");
    if (await verify(parsedVector, recipientKeys)) throw new Error("verifies with the recipient's keys");
  });
  await check("open.body", async () => {
    const body = await openBody(parsedVector, recipient);
    eq(canonicalText(body), derived.canonical_body, "opened body");
    eq(body.caller.name, "Haustür", "non-ASCII text");
    await rejects(() => openBody(parsedVector, sender), "decrypt_failed");
  });
  await check("open.receiver", async () => {
    const msg = await receiver().receive(envelopeText);
    eq({ ...msg, body: canonicalText(msg.body) }, {
      type: inputs.type, callId: inputs.call_id, from: inputs.from, to: inputs.to, ts: inputs.ts,
      body: derived.canonical_body,
    }, "message");
    const fromBytes = await receiver().receive(UTF8.encode(envelopeText));
    eq(canonicalText(fromBytes.body), derived.canonical_body, "message from bytes");
  });
  await check("open.any_serialization", async () => {
    const obj = JSON.parse(envelopeText);
    const reordered = { sig: obj.sig, v: obj.v, body: { iv: obj.body.iv, ct: obj.body.ct, epk: obj.body.epk },
      ts: obj.ts, to: obj.to, from: obj.from, call_id: obj.call_id, type: obj.type, nonce: obj.nonce };
    const msg = await receiver().receive(" \n" + JSON.stringify(reordered, null, 2) + "\r\n\t");
    eq(canonicalText(msg.body), derived.canonical_body, "body of a re-serialized envelope");
  });

  // ---------------------------------------------------------------- canonical JSON
  for (const [i, c] of vectors.canonical_json.cases.entries()) {
    await check(`canonical.case.${i}`, () => {
      eq(canonicalText(parseJson(c.input)), c.canonical, `case ${i}`);
      eq(canonical(parseJson(UTF8.encode(c.input))), UTF8.encode(c.canonical), `case ${i} bytes`);
    });
  }
  for (const [i, text] of vectors.canonical_json.refused.entries()) {
    await check(`canonical.refused.${i}`, () => misuse(() => canonical(parseJson(text))));
  }
  await check("canonical.refusals_js", async () => {
    await misuse(() => canonical({ u: undefined }), "undefined");
    await misuse(() => canonical({ f: () => 1 }), "function");
    await misuse(() => canonical({ b: 1n }), "bigint");
    await misuse(() => canonical({ n: NaN }), "not an integer");
    await misuse(() => canonical({ d: new Date(0) }), "not a plain object");
    await misuse(() => canonical({ s: "\udc00" }), "lone surrogate");
    let deep = /** @type {unknown} */ (1);
    for (let i = 0; i < 34; i++) deep = [deep];
    await misuse(() => canonical(deep), "nested deeper");
    eq(canonicalText({ "\u2028\u007f/": "\u2029" }), '{"\u2028\u007f/":"\u2029"}', "U+2028 / DEL / slash as themselves");
    eq(canonicalText({ z: -0, a: [true, null, "é"] }), '{"a":[true,null,"é"],"z":0}', "sorting and -0");
  });
  await check("json.strict", async () => {
    await rejects(() => parseJson('{"a": 1, "a": 2}'), "bad_json");
    await rejects(() => parseJson('{"a": {"b": 1, "b": 1}}'), "bad_json");
    await rejects(() => parseJson('{"a\\u0062": 1, "ab": 2}'), "bad_json");
    await rejects(() => parseJson('{"a": NaN}'), "bad_json");
    await rejects(() => parseJson('{"a": -Infinity}'), "bad_json");
    await rejects(() => parseJson("{'a': 1}"), "bad_json");
    await rejects(() => parseJson('{"a": 1,}'), "bad_json");
    await rejects(() => parseJson('{"a": 01}'), "bad_json");
    await rejects(() => parseJson('{"a": "x\ny"}'), "bad_json");
    await rejects(() => parseJson("{} {}"), "bad_json");
    await rejects(() => parseJson(""), "bad_json");
    await rejects(() => parseJson(new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])), "bad_json");
    await rejects(() => parseJson(new Uint8Array([0xef, 0xbb, 0xbf, 0x7b, 0x7d])), "bad_json");
    eq(Object.keys(parseJson('{"__proto__": 1}')), ["__proto__"], "__proto__ is an own key");
    eq(parseJson("[1.5, -0, 1e2]"), [1.5, 0, 100], "numbers");
  });

  // ---------------------------------------------------------------- b64u
  await check("b64u.round_trip", () => {
    for (let n = 0; n < 70; n++) {
      const bytes = crypto.getRandomValues(new Uint8Array(n));
      const text = b64u.encode(bytes);
      const expected = btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
      eq(text, expected, `encode ${n} bytes`);
      eq(b64u.decode(text), bytes, `decode ${n} bytes`);
    }
    eq(b64u.decode(""), new Uint8Array(0), "empty");
  });
  await check("b64u.strict", async () => {
    await misuse(() => b64u.decode("QQ=="), '"="');
    await misuse(() => b64u.decode("QQ="), '"="');
    await misuse(() => b64u.decode("a+bc"), '"+"');
    await misuse(() => b64u.decode("a/bc"), '"/"');
    await misuse(() => b64u.decode("ab c"), '" "');
    await misuse(() => b64u.decode("abcd\n"), "not in A-Z");
    await misuse(() => b64u.decode("abcde"), "impossible length");
    await misuse(() => b64u.decode("QR"), "non-canonical");
    await misuse(() => b64u.decode("QUJ"), "non-canonical");
    await misuse(() => b64u.decode("é"), "not in A-Z");
    eq(b64u.decode("QQ"), UTF8.encode("A"), "canonical QQ");
    eq(b64u.decode("QUI"), UTF8.encode("AB"), "canonical QUI");
  });

  // ---------------------------------------------------------------- structural rejections
  await check("reject.oversize", async () => {
    const padded = envelopeText + " ".repeat(MAX_ENVELOPE_BYTES - UTF8.encode(envelopeText).length);
    await receiver().receive(padded); // exactly the limit: accepted
    await rejects(() => receiver().receive(padded + " "), "oversize");
    await rejects(() => parseEnvelope(UTF8.encode(padded + " ")), "oversize");
    await rejects(() => parseEnvelope("{" + "\u00e9".repeat(MAX_ENVELOPE_BYTES / 2) + "}"), "oversize");
  });
  await check("reject.bad_json", async () => {
    await rejects(() => parseEnvelope(envelopeText.replace('"v":1}', '"v":1,"v":1}')), "bad_json");
    await rejects(() => parseEnvelope(envelopeText.replace("1767225600000", "NaN")), "bad_json");
    await rejects(() => parseEnvelope(envelopeText.slice(0, -1)), "bad_json");
    await rejects(() => parseEnvelope(new Uint8Array([0xc3, 0x28])), "bad_json");
  });
  await check("reject.bad_format", async () => {
    const bad = [
      "[1]",
      '"v"',
      '{"type":"invite"}',
      mutated(envelopeText, { v: "1" }),
      envelopeText.replace('"v":1}', '"v":1.0}'),
      envelopeText.replace('"ts":1767225600000', '"ts":1767225600000.0'),
      envelopeText.replace('"ts":1767225600000', '"ts":1.7672256e12'),
      mutated(envelopeText, { extra: 1 }),
      mutated(envelopeText, { extra: 1 }, true),
      mutated(envelopeText, { sig: undefined }),
      mutated(envelopeText, { iv: undefined }, true),
      mutated(envelopeText, { ts: -1 }),
      mutated(envelopeText, { ts: 2 ** 53 }),
      mutated(envelopeText, { ts: "1767225600000" }),
      mutated(envelopeText, { type: "Invite" }),
      mutated(envelopeText, { type: "x".repeat(33) }),
      mutated(envelopeText, { call_id: "a.b" }),
      mutated(envelopeText, { call_id: "" }),
      mutated(envelopeText, { from: "Door" }),
      mutated(envelopeText, { to: "x".repeat(65) }),
      mutated(envelopeText, { nonce: b64u.encode(new Uint8Array(15)) }),
      mutated(envelopeText, { nonce: JSON.parse(envelopeText).nonce + "=" }),
      mutated(envelopeText, { body: [] }),
      mutated(envelopeText, { epk: b64u.encode(new Uint8Array(31)) }, true),
      mutated(envelopeText, { iv: b64u.encode(new Uint8Array(16)) }, true),
      mutated(envelopeText, { ct: b64u.encode(new Uint8Array(15)) }, true),
      mutated(envelopeText, { ct: derived.ct_b64u.replaceAll("_", "/") }, true),
      mutated(envelopeText, { sig: b64u.encode(new Uint8Array(63)) }),
    ];
    for (const [i, text] of bad.entries()) {
      try {
        await rejects(() => receiver().receive(text), "bad_format");
      } catch (err) {
        throw new Error(`case ${i} (${text.slice(0, 80)}): ${/** @type {Error} */ (err).message}`);
      }
    }
    const unknownField = await rejects(() => parseEnvelope(mutated(envelopeText, { extra: 1 })), "bad_format");
    if (!unknownField.detail.includes('"extra"')) throw new Error(`detail does not name the field: ${unknownField.detail}`);
  });
  await check("reject.unknown_version", async () => {
    await rejects(() => parseEnvelope(mutated(envelopeText, { v: 2 })), "unknown_version");
    await rejects(() => parseEnvelope('{"v":2,"whatever":1.5}'), "unknown_version");
    await rejects(() => parseEnvelope('{"v":0}'), "unknown_version");
  });

  // ---------------------------------------------------------------- receiver checks
  await check("reject.wrong_recipient", async () => {
    await rejects(() => receiver({ address: "flat-13.kitchen" }).receive(envelopeText), "wrong_recipient");
  });
  await check("reject.unknown_type", async () => {
    const text = await seal({
      identity: sender, from: "door", to: vectors.recipient.address, recipient: recipientKeys,
      type: "teleport", callId: inputs.call_id, body: {}, ts: inputs.ts,
    });
    await rejects(() => receiver().receive(text), "unknown_type");
  });
  await check("reject.unknown_sender", async () => {
    await rejects(() => receiver({ pinned: {} }).receive(envelopeText), "unknown_sender");
    await rejects(() => receiver({ pinned: {}, advertised: { door: senderKeys } }).receive(envelopeText), "unknown_sender");
  });
  await check("reject.bad_signature", async () => {
    const flippedSig = parsedVector.with({ sig: flip(parsedVector.sig, 10) }).toText();
    const err = await rejects(() => receiver().receive(flippedSig), "bad_signature");
    eq(err.claimed, { type: "invite", callId: inputs.call_id, from: "door" }, "claimed origin");
    const flippedCt = parsedVector.with({ ct: flip(parsedVector.ct, 5) }).toText();
    await rejects(() => receiver().receive(flippedCt), "bad_signature");
    for (const change of [{ ts: inputs.ts + 1 }, { call_id: "another-call" }, { type: "answer" },
      { from: "door2" }, { nonce: b64u.encode(flip(nonce)) }]) {
      const pinned = { door: senderKeys, door2: senderKeys };
      await rejects(() => receiver({ pinned }).receive(mutated(envelopeText, change)), "bad_signature");
    }
    await rejects(() => receiver().receive(mutated(envelopeText, { iv: b64u.encode(flip(iv)) }, true)), "bad_signature");
    await rejects(() => receiver({ pinned: { door: recipientKeys } }).receive(envelopeText), "bad_signature");
  });
  await check("reject.decrypt_failed", async () => {
    // The same tampering re-signed by the sender passes the signature and fails decryption.
    const cases = [
      parsedVector.with({ ct: flip(parsedVector.ct, 5) }),
      parsedVector.with({ ct: flip(parsedVector.ct, parsedVector.ct.length - 1) }),
      parsedVector.with({ iv: flip(iv) }),
      parsedVector.with({ ts: inputs.ts + 1 }),
      parsedVector.with({ callId: "another-call" }),
      parsedVector.with({ epk: flip(parsedVector.epk, 3) }),
      parsedVector.with({ epk: new Uint8Array(32) }),
      parsedVector.with({ epk: fromHex("0100000000000000000000000000000000000000000000000000000000000000") }),
    ];
    for (const [i, env] of cases.entries()) {
      const text = (await signEnvelope(env, sender)).toText();
      try {
        await rejects(() => receiver().receive(text), "decrypt_failed");
      } catch (err) {
        throw new Error(`case ${i}: ${/** @type {Error} */ (err).message}`);
      }
    }
  });
  await check("reject.bad_format_body", async () => {
    const bodies = ["[1]", '"x"', "null", '{"a":1.5}', '{"a":1.0}', '{"a":1e2}', '{"a":9007199254740992}',
      '{"a":1,"a":2}', '{"s":"\\ud800"}', "{", '{"a":NaN}'];
    for (const text of bodies) {
      const sealed = await sealRaw(parsedVector, sender, recipientKeys, UTF8.encode(text));
      try {
        await rejects(() => receiver().receive(sealed), "bad_format");
      } catch (err) {
        throw new Error(`body ${text}: ${/** @type {Error} */ (err).message}`);
      }
    }
    const notUtf8 = await sealRaw(parsedVector, sender, recipientKeys, new Uint8Array([0x7b, 0xff, 0x7d]));
    await rejects(() => receiver().receive(notUtf8), "bad_format");
    const nonCanonical = await sealRaw(parsedVector, sender, recipientKeys, UTF8.encode(' { "b" : [1] , "a" : "\\u00e9" } '));
    const msg = await receiver().receive(nonCanonical);
    eq(canonicalText(msg.body), '{"a":"é","b":[1]}', "a non-canonical body is accepted");
  });
  await check("reject.replay", async () => {
    const r = receiver();
    await r.receive(envelopeText);
    await rejects(() => r.receive(envelopeText), "replay");
    // Another serialization of the same envelope is the same nonce.
    await rejects(() => r.receive(JSON.stringify(JSON.parse(envelopeText), null, 1)), "replay");
    // The same invite call id with a fresh nonce is a replayed invite.
    const again = await seal({
      identity: sender, from: "door", to: vectors.recipient.address, recipient: recipientKeys,
      type: "invite", callId: inputs.call_id, body: inputs.body, ts: inputs.ts,
    });
    await rejects(() => r.receive(again), "replay");
    // Other message types of that call are fine (wrong_call is the call layer's business).
    const ringing = await seal({
      identity: sender, from: "door", to: vectors.recipient.address, recipient: recipientKeys,
      type: "hangup", callId: inputs.call_id, body: { reason: "user" }, ts: inputs.ts,
    });
    await r.receive(ringing);
    // After the window the nonce is forgotten, but the message is then stale.
    let mono = 0;
    let wall = inputs.ts;
    const guard = new ReplayGuard({ monotonic: () => mono, wallClock: () => wall });
    const r2 = receiver({ replay: guard });
    await r2.receive(envelopeText);
    mono = 121_000;
    wall = inputs.ts + 121_000;
    await rejects(() => r2.receive(envelopeText), "stale");
    wall = inputs.ts;
    await rejects(() => r2.receive(envelopeText), "replay"); // the invite's call id is remembered
  });
  await check("reject.stale", async () => {
    const late = new ReplayGuard({ wallClock: () => inputs.ts + 120_001 });
    await rejects(() => receiver({ replay: late }).receive(envelopeText), "stale");
    const early = new ReplayGuard({ wallClock: () => inputs.ts - 120_001 });
    await rejects(() => receiver({ replay: early }).receive(envelopeText), "stale");
    const edge = new ReplayGuard({ wallClock: () => inputs.ts + 120_000 });
    await receiver({ replay: edge }).receive(envelopeText);
    // A stale message is not remembered: it passes once the clock is right again.
    let wall = inputs.ts + 500_000;
    const guard = new ReplayGuard({ wallClock: () => wall });
    const r = receiver({ replay: guard });
    await rejects(() => r.receive(envelopeText), "stale");
    wall = inputs.ts;
    await r.receive(envelopeText);
  });
  await check("reject.rate_limited", async () => {
    const r = new Receiver({
      identity: recipient, address: vectors.recipient.address,
      contacts: new TestContacts({ door: senderKeys }), replay: new ReplayGuard(),
    });
    for (let i = 0; i < 6; i++) {
      const text = await seal({
        identity: sender, from: "door", to: vectors.recipient.address, recipient: recipientKeys,
        type: "invite", callId: `call-${i}`, body: {},
      });
      if (i < 5) await r.receive(text);
      else await rejects(() => r.receive(text), "rate_limited");
    }
  });
  await check("reject.key_changed", async () => {
    const oldKeys = (await Identity.generate()).publicKeys;
    // Pinned: an old key; the profile now advertises the key that signed: key_changed.
    const err = await rejects(
      () => receiver({ pinned: { door: oldKeys }, advertised: { door: senderKeys } }).receive(envelopeText),
      "key_changed",
    );
    if (!err.detail.includes(vectors.sender.fingerprint)) throw new Error(`detail lacks the new fingerprint: ${err.detail}`);
    // The profile advertises yet another key: a plain bad signature.
    const third = (await Identity.generate()).publicKeys;
    await rejects(() => receiver({ pinned: { door: oldKeys }, advertised: { door: third } }).receive(envelopeText), "bad_signature");
    // No advertised keys at all: bad signature.
    await rejects(() => receiver({ pinned: { door: oldKeys } }).receive(envelopeText), "bad_signature");
    // Advertised equal to pinned (the signature is simply bad): bad signature.
    const forged = parsedVector.with({ sig: flip(parsedVector.sig) }).toText();
    await rejects(() => receiver({ advertised: { door: senderKeys } }).receive(forged), "bad_signature");
  });

  // ---------------------------------------------------------------- producers and identities
  await check("seal.refusals", async () => {
    const base = {
      identity: sender, from: "door", to: "flat-12.kitchen", recipient: recipientKeys, type: "mute",
      callId: "abc", body: { audio: true, video: false },
    };
    await seal(base);
    await misuse(() => seal({ ...base, body: { level: 0.5 } }), "body");
    await misuse(() => seal({ ...base, body: [] }), "JSON object");
    await misuse(() => seal({ ...base, to: "Flat 12" }), "'to'");
    await misuse(() => seal({ ...base, from: "" }), "'from'");
    await misuse(() => seal({ ...base, callId: "a/b" }), "'call_id'");
    await misuse(() => seal({ ...base, type: "MUTE" }), "'type'");
    await misuse(() => seal({ ...base, ts: -5 }), "ts");
    await misuse(() => seal({ ...base, ts: 1.5 }), "ts");
    await misuse(() => seal({ ...base, nonce: new Uint8Array(8) }), "nonce");
    await misuse(() => seal({ ...base, iv: new Uint8Array(16) }), "iv");
    await misuse(() => seal({ ...base, body: { sdp: "x".repeat(60_000) } }), "over the limit");
    const lowOrder = new PublicKeys(recipientKeys.sign, new Uint8Array(32));
    await misuse(() => seal({ ...base, recipient: lowOrder }), "unusable");
  });
  await check("identity.generate", async () => {
    const a = await Identity.generate();
    const b = await Identity.generate();
    if (a.signKey.extractable || a.dhKey.extractable) throw new Error("generated private keys are extractable");
    if (a.publicKeys.equals(b.publicKeys)) throw new Error("two identities share keys");
    const restored = Identity.fromStored(structuredClone(a.toStored()));
    const text = await seal({
      identity: restored, from: "phone", to: "door", recipient: b.publicKeys, type: "dtmf",
      callId: "c1", body: { digit: 11 },
    });
    const r = new Receiver({ identity: b, address: "door", contacts: new TestContacts({ phone: a.publicKeys }) });
    const msg = await r.receive(text);
    eq([msg.type, msg.from, msg.body.digit], ["dtmf", "phone", 11], "message between generated identities");
    eq(await safetyNumber(a.publicKeys, b.publicKeys), await safetyNumber(b.publicKeys, a.publicKeys), "symmetric");
    if (!MESSAGE_TYPES.has("unlock_result") || !MESSAGE_TYPES.has("push_status") || MESSAGE_TYPES.size !== 19) {
      throw new Error("MESSAGE_TYPES");
    }
  });

  return { passed, failed };
}

// ------------------------------------------------------------------------------ interop helpers

/**
 * Seal a body with the sender's raw private keys (for the Python interop test). The optional
 * hex `nonceHex`, `ivHex` and `ephemeralPrivateHex` make the result deterministic.
 * @param {{signPrivateHex: string, dhPrivateHex: string, from: string, to: string,
 *   recipientKeys: {sign: string, dh: string}, type: string, callId: string,
 *   body: Record<string, unknown>, ts?: number, nonceHex?: string, ivHex?: string,
 *   ephemeralPrivateHex?: string}} params
 * @returns {Promise<string>} the envelope text
 */
async function sealForTest(params) {
  const identity = await Identity.fromPrivate(fromHex(params.signPrivateHex), fromHex(params.dhPrivateHex));
  /** @param {string | undefined} hex */
  const optional = (hex) => (hex === undefined ? undefined : fromHex(hex));
  return seal({
    identity, from: params.from, to: params.to, recipient: PublicKeys.fromJson(params.recipientKeys),
    type: params.type, callId: params.callId, body: params.body, ts: params.ts,
    nonce: optional(params.nonceHex), iv: optional(params.ivHex),
    ephemeralPrivate: optional(params.ephemeralPrivateHex),
  });
}

/**
 * Open an envelope as a recipient given by raw private keys, running every receiver check
 * (for the Python interop test). A rejection is returned as `{rejected: reason, detail}`.
 * @param {{envelope: string, signPrivateHex: string, dhPrivateHex: string, address: string,
 *   senderAddress: string, senderKeys: {sign: string, dh: string}}} params
 * @returns {Promise<object>}
 */
async function openForTest(params) {
  const identity = await Identity.fromPrivate(fromHex(params.signPrivateHex), fromHex(params.dhPrivateHex));
  const receiver = new Receiver({
    identity, address: params.address,
    contacts: new TestContacts({ [params.senderAddress]: PublicKeys.fromJson(params.senderKeys) }),
  });
  try {
    return await receiver.receive(params.envelope);
  } catch (err) {
    if (err instanceof Rejected) return { rejected: err.reason, detail: err.detail };
    throw err;
  }
}

/**
 * Read a published site directory as the phone does (docs/protocol.md, "Site directory"):
 * `{version, entries: [{address, role, flat, keys}], peersOf, signedBytes}` with the peers a
 * phone at `params.address` trusts, or `{refused: problem, detail}`.
 * @param {{document: string, site: string, adminKey: string, address: string}} params
 * @returns {Promise<object>}
 */
async function readDirectoryForTest(params) {
  try {
    const directory = await readDirectory(new TextEncoder().encode(params.document), {
      site: params.site, adminKey: adminKeyBytes(params.adminKey),
    });
    const unsigned = Object.fromEntries(
      Object.entries(parseJson(params.document)).filter(([k]) => k !== "sig"),
    );
    return {
      version: directory.version,
      entries: directory.entries.map((e) => ({
        address: e.address, name: e.name, role: e.role, flat: e.flat, rights: e.rights,
        keys: e.keys.toJson(),
      })),
      peersOf: peersOf(directory, params.address).map((e) => e.address),
      signedBytes: new TextDecoder().decode(concatBytes(DIRECTORY_SIG_CONTEXT, canonical(unsigned))),
    };
  } catch (err) {
    if (err instanceof DirectoryRefused) return { refused: err.problem, detail: err.message };
    throw err;
  }
}

Object.assign(window, { runVectors, sealForTest, openForTest, readDirectoryForTest });
