/**
 * The receiving side of an endpoint: every check of docs/protocol.md in the order of
 * "Rejection reasons" — structure (size, JSON, format, version), recipient, type, sender,
 * signature (with `key_changed` when the sender's advertised keys verify instead of the pinned
 * ones), decryption and body format, freshness and replay, invite rate. `wrong_call` is the call
 * layer's business.
 * @module protocol/receiver
 */

import { ProtocolError, Rejected } from "./errors.js";
import { MAX_ENVELOPE_BYTES, MESSAGE_TYPES, openBody, parseEnvelope, verify } from "./envelope.js";
import { Identity } from "./identity.js";
import { PublicKeys } from "./keys.js";
import { ReplayGuard } from "./replay.js";

/** At most `count` invites per `periodMs` from one sender (`rate_limited` beyond). */
export class InviteRateLimit {
  /**
   * @param {object} [options]
   * @param {number} [options.count] invites allowed per period (5)
   * @param {number} [options.periodMs] the period in milliseconds (10 s)
   * @param {() => number} [options.monotonic] monotonic clock in milliseconds
   */
  constructor({ count = 5, periodMs = 10_000, monotonic = () => performance.now() } = {}) {
    this.count = count;
    this.periodMs = periodMs;
    this.monotonic = monotonic;
    /** @type {Map<string, number[]>} */
    this.seen = new Map();
  }

  /**
   * Refuse the invite when `sender` is over its budget; count it otherwise.
   * @param {string} sender
   * @throws {Rejected} `rate_limited`
   */
  check(sender) {
    const now = this.monotonic();
    const times = (this.seen.get(sender) ?? []).filter((t) => now - t <= this.periodMs);
    this.seen.set(sender, times);
    if (times.length >= this.count) {
      throw new Rejected(
        "rate_limited",
        `${sender} sent more than ${this.count} invites in ${Math.round(this.periodMs / 1000)} s`,
      );
    }
    times.push(now);
  }
}

/**
 * What the receiver knows about its peers' keys.
 * @typedef {object} Contacts
 * @property {(address: string) => PublicKeys | null} pinned the keys a person confirmed
 * @property {(address: string) => PublicKeys | null} advertised the keys the retained profile
 *   advertises now
 */

/**
 * A verified, decrypted message.
 * @typedef {object} Message
 * @property {string} type
 * @property {string} callId
 * @property {string} from
 * @property {string} to
 * @property {number} ts
 * @property {Record<string, any>} body
 */

/** Runs every check on incoming envelopes for one address. */
export class Receiver {
  /**
   * @param {object} options
   * @param {Identity} options.identity this endpoint's identity
   * @param {string} options.address this endpoint's address
   * @param {Contacts} options.contacts pinned and advertised keys of peers
   * @param {ReplayGuard} [options.replay] a replay guard (a new one by default)
   * @param {InviteRateLimit | null} [options.inviteLimit] invite rate limit (5 per 10 s by
   *   default; null for none)
   * @param {number} [options.maxBytes] envelope size limit
   */
  constructor({ identity, address, contacts, replay, inviteLimit, maxBytes = MAX_ENVELOPE_BYTES }) {
    if (!(identity instanceof Identity)) throw new ProtocolError("Receiver: identity must be an Identity");
    if (typeof contacts?.pinned !== "function" || typeof contacts?.advertised !== "function") {
      throw new ProtocolError("Receiver: contacts must have pinned(address) and advertised(address)");
    }
    this.identity = identity;
    this.address = address;
    this.contacts = contacts;
    this.replay = replay ?? new ReplayGuard();
    this.inviteLimit = inviteLimit === undefined ? new InviteRateLimit() : inviteLimit;
    this.maxBytes = maxBytes;
  }

  /**
   * Run every check on one envelope and return its message.
   * @param {string | Uint8Array | ArrayBuffer} input the wire text or bytes
   * @returns {Promise<Message>}
   * @throws {Rejected} naming the first check that failed; once the envelope parsed, the error's
   *   `claimed` says which sender and call it claims to belong to
   */
  async receive(input) {
    const env = parseEnvelope(input, { maxBytes: this.maxBytes });
    const claimed = env.claimed();
    if (env.to !== this.address) {
      throw new Rejected("wrong_recipient", `addressed to ${env.to}, not ${this.address}`, claimed);
    }
    if (!MESSAGE_TYPES.has(env.type)) {
      throw new Rejected("unknown_type", `type '${env.type}' from ${env.from}`, claimed);
    }
    const pinned = this.contacts.pinned(env.from);
    if (!(pinned instanceof PublicKeys)) {
      throw new Rejected("unknown_sender", `${env.from} is not a contact with pinned keys`, claimed);
    }
    if (!(await verify(env, pinned))) {
      const advertised = this.contacts.advertised(env.from);
      const fp = await pinned.fingerprint();
      if (advertised instanceof PublicKeys && !advertised.equals(pinned) && (await verify(env, advertised))) {
        throw new Rejected(
          "key_changed",
          `${env.from} signs with a new key ${await advertised.fingerprint()} (pinned ${fp}); ` +
            "refused until a person confirms the new safety number",
          claimed,
        );
      }
      throw new Rejected(
        "bad_signature",
        `signature of '${env.type}' from '${env.from}' does not verify with key ${fp}`,
        claimed,
      );
    }
    const body = await openBody(env, this.identity);
    try {
      this.replay.check(env.from, env.nonce, env.ts, env.type, env.callId);
      if (env.type === "invite" && this.inviteLimit !== null) this.inviteLimit.check(env.from);
    } catch (err) {
      if (err instanceof Rejected) err.claimed = claimed;
      throw err;
    }
    return { type: env.type, callId: env.callId, from: env.from, to: env.to, ts: env.ts, body };
  }
}
