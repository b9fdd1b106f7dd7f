/**
 * Errors of the protocol core (docs/protocol.md, "Rejection reasons").
 *
 * A message a receiver drops is reported as a {@link Rejected} carrying one of the protocol's
 * rejection reasons; local misuse (bad input to a producer such as `seal` or `canonical`) is a
 * {@link ProtocolError}.
 * @module protocol/errors
 */

/**
 * The rejection reasons of protocol version 1, as used in logs and counters.
 * @type {readonly string[]}
 */
export const REJECT_REASONS = Object.freeze([
  "oversize",
  "bad_json",
  "bad_format",
  "unknown_version",
  "wrong_recipient",
  "unknown_sender",
  "key_changed",
  "bad_signature",
  "stale",
  "replay",
  "decrypt_failed",
  "unknown_type",
  "wrong_call",
  "rate_limited",
]);

const REASON_SET = new Set(REJECT_REASONS);

/**
 * An incoming message was dropped.
 *
 * `reason` says which check failed (one of {@link REJECT_REASONS}), `detail` says what exactly
 * was wrong; the message names both, e.g.
 * `message rejected (bad_signature): signature of 'invite' from 'door' does not verify`.
 * Once the envelope parsed, `claimed` holds what it claims to be (`{type, callId, from}`), so
 * the call layer can tell that a tampered message targeted one of its calls.
 */
export class Rejected extends Error {
  /**
   * @param {string} reason one of {@link REJECT_REASONS}
   * @param {string} detail a human-readable explanation naming the field, sender, …
   * @param {{type: string, callId: string, from: string} | null} [claimed] what the envelope
   *   claims to be, when it parsed
   */
  constructor(reason, detail, claimed = null) {
    if (!REASON_SET.has(reason)) {
      throw new ProtocolError(`Rejected: unknown rejection reason ${JSON.stringify(reason)}`);
    }
    super(`message rejected (${reason}): ${detail}`);
    this.name = "Rejected";
    /** @type {string} */
    this.reason = reason;
    /** @type {string} */
    this.detail = String(detail);
    /** @type {{type: string, callId: string, from: string} | null} */
    this.claimed = claimed;
  }
}

/** Local misuse of the protocol core: bad input to a producer, bad key material. */
export class ProtocolError extends Error {
  /** @param {string} message what was wrong and why */
  constructor(message) {
    super(message);
    this.name = "ProtocolError";
  }
}
