/**
 * Replay protection that does not rest on synchronised clocks alone (docs/protocol.md,
 * "Replay protection"):
 * 1. every (sender, nonce) accepted is remembered for the freshness window, timed by this
 *    receiver's monotonic clock, so a repeat inside the window is caught whatever the clocks say;
 * 2. `ts` must be within the window of this receiver's wall clock (`stale` otherwise), so a
 *    message is refused once its nonce may have been forgotten;
 * 3. the call id of every invite accepted from a sender is remembered (the last 10 000), and an
 *    invite repeating one is refused even with skewed clocks.
 * Only authenticated messages may be checked here (the receiver verifies first).
 * @module protocol/replay
 */

import * as b64u from "./b64u.js";
import { Rejected } from "./errors.js";

/** Remembers nonces and invite call ids; refuses repeats and stale messages. */
export class ReplayGuard {
  /**
   * @param {object} [options]
   * @param {number} [options.windowMs] freshness window in milliseconds (120 s)
   * @param {number} [options.maxCallIds] invite call ids remembered (10 000)
   * @param {number} [options.maxNonces] nonces remembered at most (100 000)
   * @param {() => number} [options.monotonic] monotonic clock in milliseconds
   * @param {() => number} [options.wallClock] wall clock in milliseconds since the epoch
   */
  constructor({
    windowMs = 120_000,
    maxCallIds = 10_000,
    maxNonces = 100_000,
    monotonic = () => performance.now(),
    wallClock = () => Date.now(),
  } = {}) {
    /** @type {number} */
    this.windowMs = windowMs;
    this.maxCallIds = maxCallIds;
    this.maxNonces = maxNonces;
    this.monotonic = monotonic;
    this.wallClock = wallClock;
    /** @type {Map<string, number>} "sender nonce" -> monotonic time first seen, oldest first */
    this.nonces = new Map();
    /** @type {Set<string>} "sender call id" of accepted invites, oldest first */
    this.callIds = new Set();
  }

  /**
   * Refuse a stale message, a repeated nonce or an invite repeating a call id; remember the
   * nonce (and the invite's call id) only when the message passes.
   * @param {string} sender the sender's address
   * @param {Uint8Array | string} nonce the nonce, raw or base64url
   * @param {number} ts the message's `ts` (milliseconds since the epoch)
   * @param {string} [type] the message type (`invite` call ids are remembered)
   * @param {string} [callId] the call id
   * @throws {Rejected} `stale` or `replay`
   */
  check(sender, nonce, ts, type, callId) {
    const skew = Math.abs(this.wallClock() - ts);
    if (skew > this.windowMs) {
      throw new Rejected(
        "stale",
        `timestamp from ${sender} is ${Math.round(skew / 1000)} s away from this clock ` +
          `(window ${Math.round(this.windowMs / 1000)} s)`,
      );
    }
    const now = this.monotonic();
    this.expire(now);
    const nonceKey = `${sender} ${typeof nonce === "string" ? nonce : b64u.encode(nonce)}`;
    if (this.nonces.has(nonceKey)) {
      throw new Rejected("replay", `nonce from ${sender} was already used`);
    }
    const callKey = type === "invite" ? `${sender} ${callId}` : null;
    if (callKey !== null && this.callIds.has(callKey)) {
      throw new Rejected("replay", `invite ${callId} from ${sender} was already received`);
    }
    this.nonces.set(nonceKey, now);
    trim(this.nonces, this.maxNonces);
    if (callKey !== null) {
      this.callIds.add(callKey);
      trim(this.callIds, this.maxCallIds);
    }
  }

  /**
   * Forget nonces older than the window.
   * @param {number} now monotonic time in milliseconds
   */
  expire(now) {
    for (const [key, seenAt] of this.nonces) {
      if (now - seenAt <= this.windowMs) return;
      this.nonces.delete(key);
    }
  }
}

/**
 * Drop the oldest entries of a Map or Set until it holds at most `max`.
 * @param {Map<string, unknown> | Set<string>} collection
 * @param {number} max
 */
function trim(collection, max) {
  for (const key of collection.keys()) {
    if (collection.size <= max) return;
    collection.delete(key);
  }
}
