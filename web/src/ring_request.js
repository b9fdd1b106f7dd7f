// A ring the resident acted on in a notification (web/src/sw.js): the page was opened at
// ./?ring=<call id>&action=answer|decline, or an open page was told by the worker. The page
// waits for the door's own signed invite of that call (the push carries nothing that joins a
// call by itself), shows the visitor's preview first, then answers or declines.

import { isValidCallId } from "./protocol/envelope.js";

/** How long to wait for the door's invite of the call: the longest ring plus a connection. */
export const INVITE_WAIT_MS = 45000;
/** The preview is shown this long at most before acting when no video frame comes. */
export const PREVIEW_WAIT_MS = 4000;
const ACTIONS = new Set(["answer", "decline", ""]);

/** `{callId, action}` from the page's URL (`?ring=…&action=…`), or null. */
export function ringFromUrl(url) {
  const params = new URL(url).searchParams;
  const callId = params.get("ring");
  const action = params.get("action") ?? "";
  if (!isValidCallId(callId) || !ACTIONS.has(action)) return null;
  return { callId, action };
}

export class RingRequest {
  /** `phone` is the Phone (call.js); `ui` shows errors and redraws. */
  constructor({ phone, ui }) {
    this.phone = phone;
    this.ui = ui;
    /** @type {{callId: string, action: string, state: string}|null} */
    this.pending = null;
    this.timer = null;
  }

  /**
   * Wait for call `callId` and then do `action` ("answer", "decline" or "" to let it ring).
   * `state`: "waiting" (for the invite), "preview", "answered", "declined", "ringing", "over";
   * `previewFrames`: the visitor's video frames shown before answering or declining.
   */
  want({ callId, action }) {
    clearTimeout(this.timer);
    this.pending = { callId, action, state: "waiting" };
    console.info(`callbox: from a notification: ${action || "show"} call ${callId} once the door invites`);
    this.timer = setTimeout(() => this._over(callId), INVITE_WAIT_MS);
    this.ui.changed();
    const call = this.phone.call;
    if (call && !call.ended && call.callId === callId) this.ringing(call);
  }

  /** The phone rings with `call` (the door's invite arrived): act if it is the one wanted. */
  ringing(call) {
    const pending = this.pending;
    if (!pending || pending.state !== "waiting" || call.callId !== pending.callId) return;
    clearTimeout(this.timer);
    if (!pending.action) {
      pending.state = "ringing";
      this.ui.changed();
      return;
    }
    pending.state = "preview";
    this.ui.changed();
    this._afterPreview(call).catch((err) => this.ui.showError(err.message ?? String(err)));
  }

  async _afterPreview(call) {
    const pending = this.pending;
    const until = Date.now() + PREVIEW_WAIT_MS;
    while (call.video && !call.ended && Date.now() < until) {
      if ((this.phone.callSnapshot(call)?.remoteVideoFrames ?? 0) > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    if (call.ended || this.pending !== pending) return;
    pending.previewFrames = this.phone.callSnapshot(call)?.remoteVideoFrames ?? 0;
    if (pending.action === "answer") {
      pending.state = "answered";
      await this.phone.answer({ video: true });
    } else {
      pending.state = "declined";
      await this.phone.decline();
    }
    this.ui.changed();
  }

  _over(callId) {
    if (this.pending?.callId !== callId || this.pending.state !== "waiting") return;
    this.pending.state = "over";
    this.ui.showError("The visitor's call is over: the door stopped ringing before this phone joined.");
  }

  snapshot() {
    return this.pending ? { ...this.pending } : null;
  }
}
