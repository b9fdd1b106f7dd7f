// Door release during a call with a door station (docs/protocol.md "Door release"):
// `unlock` with the door's current challenge, `unlock_result` with the next one.
// Blocked while the door's keys changed. Mixed into Phone (call.js): `this` is the phone.

const UNLOCK_TIMEOUT_MS = 5000;

export const doorRelease = {
  _canUnlock(call) {
    return Boolean(
      call &&
        !call.ended &&
        call.unlockChallenge &&
        !call.unlockPending &&
        this.peers.trusted(call.peer),
    );
  },

  /** Ask the door of this call to open; the outcome shows as `lastUnlock`. */
  async openDoor() {
    const call = this._active();
    if (!call) throw new Error("no call: the door opens during a call with it");
    if (!this.peers.trusted(call.peer)) {
      this.ui.showError("The door's keys changed: compare the safety number before opening.");
      return false;
    }
    const challenge = call.unlockChallenge;
    if (!challenge) throw new Error("this call is not with a door station");
    if (call.unlockPending) return false;
    call.unlockPending = challenge;
    this.ui.changed();
    await this._send(call, "unlock", { challenge });
    this._timer(call, UNLOCK_TIMEOUT_MS, () => {
      if (call.unlockPending === challenge) {
        // the door may have used it up: it answers a stale one with a fresh challenge
        call.unlockPending = null;
        call.lastUnlock = { opened: false, reason: "the door did not answer" };
        this.ui.showError("The door did not answer the release request.");
        this.ui.changed();
      }
    });
    return true;
  },

  _onUnlockResult(call, body) {
    const opened = body.opened === true;
    const reason = typeof body.reason === "string" ? body.reason : "";
    if (typeof body.challenge === "string" && body.challenge) call.unlockChallenge = body.challenge;
    call.unlockPending = null;
    call.lastUnlock = { opened, reason };
    if (!opened) this.ui.showError(`The door did not open: ${reason || "refused"}.`);
    console.info(`callbox: door release ${opened ? "opened" : `refused: ${reason}`}`);
    this.ui.changed();
  },
};
