// The page: buttons, videos, banners and the call log, redrawn from the phone's snapshot.
// Ringtone (WebAudio) and a notification while a call rings and the page is open.

import { DOOR_OPENED, bellWords } from "./bell.js";

const STATUS_TEXT = {
  INCOMING: "is ringing",
  INPROGRESS: "calling…",
  RINGING: "ringing…",
  ANSWER: "answered",
  CONNECTED: "in call",
  RECONNECTING: "reconnecting…",
  COMPLETE: "call ended",
  CANCEL: "call cancelled",
  NOANSWER: "no answer",
  BUSY: "busy",
  UNREACHABLE: "unreachable",
  OFFLINE: "offline",
  NOTALLOWED: "not allowed",
  BLOCKED: "blocked",
  DURATIONEXCEEDED: "call too long",
  ERROR: "call failed",
  HWERROR: "hardware error",
  NETWORKERROR: "network error",
  SECURITYERROR: "security error: someone may be tampering with the call",
};

const PUSH_TEXT = {
  unsupported: "This browser cannot receive notifications from the door: the phone rings only while this page is open.",
  "no-key":
    "This phone's pairing link has no push key (the site has none yet, or the link is older): pair it again with a new link to get notifications.",
  off: "Off: this phone rings only while this page is open.",
  blocked: "Notifications are blocked for this page: allow them in the browser's site settings.",
  on: "On: a doorbell press shows a notification on this phone even when the page is closed.",
  error: "Notifications could not be turned on.",
};

/** How a call that ended is shown: "Door opened" when the door opened while it rang. */
function endedText(call) {
  if (call.endReason === DOOR_OPENED && call.status === "CANCEL") return "Door opened";
  return STATUS_TEXT[call.status] ?? call.status;
}

/** The outcome of a call in the call log. */
function logText(entry) {
  if (entry.missed) return "missed";
  if (entry.endReason === DOOR_OPENED && entry.status === "CANCEL") return "door opened";
  return STATUS_TEXT[entry.status] ?? entry.status;
}

const HOME_SCREEN_HINT =
  "On iPhone and iPad, notifications work only when this page is opened from the Home Screen " +
  "(iOS 16.4 or newer): tap Share, then Add to Home Screen, and open callbox from there.";

const CONNECTION_TEXT = {
  connecting: "Connecting…",
  online: "Online",
  offline: "Offline, reconnecting…",
  error: "Not connected",
};

/** A doorbell-like ringtone made with WebAudio (no audio file to fetch). */
class Ringtone {
  constructor() {
    this.context = null;
    this.timer = null;
  }

  start() {
    if (this.timer) return;
    try {
      this.context ??= new AudioContext();
      this.context.resume().catch(() => {});
    } catch (err) {
      console.warn("callbox: no ringtone", err);
      return;
    }
    const ding = () => {
      const ctx = this.context;
      if (!ctx || ctx.state !== "running") return;
      for (const [freq, at] of [
        [660, 0],
        [523, 0.35],
      ]) {
        const osc = ctx.createOscillator();
        const gain = ctx.createGain();
        osc.frequency.value = freq;
        gain.gain.setValueAtTime(0.0001, ctx.currentTime + at);
        gain.gain.exponentialRampToValueAtTime(0.3, ctx.currentTime + at + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, ctx.currentTime + at + 0.6);
        osc.connect(gain).connect(ctx.destination);
        osc.start(ctx.currentTime + at);
        osc.stop(ctx.currentTime + at + 0.65);
      }
    };
    ding();
    this.timer = setInterval(ding, 2000);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  /** A user gesture lets the AudioContext run later (browsers' autoplay rules). */
  unlock() {
    try {
      this.context ??= new AudioContext();
      this.context.resume().catch(() => {});
    } catch {
      // no WebAudio: no ringtone
    }
  }
}

export class Ui {
  /** @param {Document} doc */
  constructor(doc) {
    this.doc = doc;
    const $ = (id) => doc.getElementById(id);
    this.el = {
      status: $("status"),
      peerName: $("peer-name"),
      bell: $("bell"),
      answerVideo: $("answer-video"),
      answerAudio: $("answer-audio"),
      decline: $("decline"),
      hangup: $("hangup"),
      mute: $("mute"),
      muteVideo: $("mute-video"),
      openDoor: $("open-door"),
      viewDoor: $("view-door"),
      ownFingerprint: $("own-fingerprint"),
      siteCa: $("site-ca"),
      siteCaRow: $("site-ca-row"),
      ownKey: $("own-key"),
      safetyCode: $("safety-code"),
      error: $("error"),
      errorText: $("error-text"),
      errorClear: $("error-clear"),
      keyChange: $("key-change"),
      keyChangeText: $("key-change-text"),
      keyChangeConfirm: $("key-change-confirm"),
      callLog: $("call-log"),
      connection: $("connection"),
      unlockResult: $("unlock-result"),
      callPanel: $("call"),
      remoteMuted: $("remote-muted"),
      pushState: $("push-state"),
      pushHint: $("push-hint"),
      pushDoors: $("push-doors"),
      pushEnable: $("push-enable"),
      pushDisable: $("push-disable"),
    };
    this.remoteVideo = $("remote-video");
    this.remoteAudio = $("remote-audio");
    this.localVideo = $("local-video");
    this.error = null;
    this.snapshot = () => null;
    this.ringtone = new Ringtone();
    this.notification = null;
    this._pending = false;
    this._keyChangeFor = null;
    doc.addEventListener(
      "pointerdown",
      () => {
        this.ringtone.unlock();
        if ("Notification" in window && Notification.permission === "default") {
          Notification.requestPermission().catch(() => {});
        }
      },
      { once: true },
    );
  }

  /** Wire the buttons to the phone's actions. */
  bind(actions) {
    const on = (element, action) =>
      element?.addEventListener("click", () => {
        Promise.resolve()
          .then(action)
          .catch((err) => this.showError(err.message ?? String(err)));
      });
    on(this.el.answerVideo, () => actions.answer({ video: true }));
    on(this.el.answerAudio, () => actions.answer({ video: false }));
    on(this.el.decline, () => actions.decline());
    on(this.el.hangup, () => actions.hangup());
    on(this.el.mute, () => {
      const call = this.snapshot()?.call;
      return actions.setMuted({ audio: !(call?.muted.audio ?? false) });
    });
    on(this.el.muteVideo, () => {
      const call = this.snapshot()?.call;
      return actions.setMuted({ video: !(call?.muted.video ?? false) });
    });
    on(this.el.openDoor, () => actions.openDoor());
    on(this.el.viewDoor, () => actions.viewDoor());
    on(this.el.keyChangeConfirm, () => this._keyChangeFor && actions.confirmKeyChange(this._keyChangeFor));
    on(this.el.errorClear, () => this.clearError());
    on(this.el.pushEnable, () => actions.enablePush());
    on(this.el.pushDisable, () => actions.disablePush());
  }

  /** Show an error the person should notice (until cleared or replaced). */
  showError(text) {
    console.warn(`callbox: ${text}`);
    this.error = text;
    this.changed();
  }

  clearError(text = null) {
    if (text === null || this.error === text) {
      this.error = null;
      this.changed();
    }
  }

  /** Start or stop ringing for an incoming call. */
  ring(on, call) {
    if (on) {
      this.ringtone.start();
      if ("Notification" in window && Notification.permission === "granted") {
        try {
          const bell = bellWords(call.bell);
          this.notification = new Notification("Someone is at the door", {
            body: bell ? `${bell}: tap to answer` : "Tap to answer",
            tag: call.callId,
            requireInteraction: true,
          });
          this.notification.onclick = () => window.focus();
        } catch (err) {
          console.warn("callbox: no notification", err);
        }
      }
    } else {
      this.ringtone.stop();
      this.notification?.close();
      this.notification = null;
    }
  }

  /** Redraw at the next frame (many changes in a row draw once). */
  changed() {
    if (this._pending) return;
    this._pending = true;
    queueMicrotask(() => {
      this._pending = false;
      const snapshot = this.snapshot();
      if (snapshot) this.render(snapshot);
    });
  }

  render(s) {
    const el = this.el;
    el.connection.textContent = CONNECTION_TEXT[s.connection] ?? s.connection;
    el.connection.dataset.state = s.connection;
    el.ownFingerprint.textContent = s.fingerprint ?? "";
    el.siteCaRow.hidden = !s.siteCa;
    el.siteCa.textContent = s.siteCa ?? "";
    el.ownKey.textContent = s.keyText ?? "";

    el.error.hidden = !s.error;
    el.errorText.textContent = s.error ?? "";

    const changed = Object.entries(s.peers).find(([, p]) => p.keyChanged);
    this._keyChangeFor = changed ? changed[0] : null;
    el.keyChange.hidden = !changed;
    if (changed) {
      const [address, peer] = changed;
      el.keyChangeText.textContent =
        `The keys of ${peer.name} (${address}) changed, or are not the ones this phone was ` +
        `paired with. Calls from it are refused and the door does not open until you compare ` +
        `this safety number with the one the device shows and confirm.`;
      el.safetyCode.textContent = peer.safetyNumber ?? "";
    } else {
      el.safetyCode.textContent = "";
    }

    const call = s.call;
    const shown = call ?? s.lastCall;
    const status = call?.status ?? "IDLE";
    const peer = shown ? s.peers[shown.peer] : null;
    el.status.dataset.status = status;
    el.peerName.textContent = shown ? (peer?.name ?? shown.peer) : "";
    if (call) el.status.textContent = `${peer?.name ?? call.peer} ${STATUS_TEXT[call.status] ?? call.status}`;
    else if (s.lastCall) el.status.textContent = endedText(s.lastCall);
    else el.status.textContent = "No call";
    if (el.bell) {
      // which flat's bell or code rang (an entrance panel), while it rings and after
      const bell = shown?.direction === "in" ? bellWords(shown.bell) : "";
      el.bell.textContent = bell;
      el.bell.hidden = !bell;
    }

    const ringingHere = call && call.direction === "in" && call.status === "INCOMING";
    const active = Boolean(call);
    el.callPanel.dataset.active = String(active);
    this.localVideo.hidden = !this.localVideo.srcObject;
    el.answerVideo.hidden = !ringingHere || !call.video;
    el.answerAudio.hidden = !ringingHere;
    el.decline.hidden = !ringingHere;
    el.hangup.hidden = !active || ringingHere;
    el.mute.hidden = !active || ringingHere;
    el.mute.textContent = call?.muted.audio ? "Unmute" : "Mute";
    el.mute.setAttribute("aria-pressed", String(Boolean(call?.muted.audio)));
    if (el.muteVideo) {
      el.muteVideo.hidden = !active || ringingHere || call.direction === "out";
      el.muteVideo.textContent = call?.muted.video ? "Camera on" : "Camera off";
    }
    el.openDoor.hidden = !call || !call.canUnlock;
    el.openDoor.disabled = !call?.canUnlock;
    el.viewDoor.hidden = active;
    el.viewDoor.disabled = s.connection !== "online";
    el.remoteMuted.textContent = call
      ? [call.remoteMuted.audio && "visitor's microphone muted", call.remoteMuted.video && "camera off"]
          .filter(Boolean)
          .join(", ")
      : "";
    const unlock = call?.lastUnlock;
    el.unlockResult.textContent = unlock
      ? unlock.opened
        ? "Door opened"
        : `Door not opened: ${unlock.reason}`
      : "";

    this._renderPush(s);

    el.callLog.replaceChildren(
      ...s.log.slice(0, 20).map((entry) => {
        const li = this.doc.createElement("li");
        const when = new Date(entry.startedAt).toLocaleString();
        const name = s.peers[entry.peer]?.name ?? entry.peer;
        const arrow = entry.direction === "in" ? "←" : "→";
        const duration = entry.durationS ? ` ${entry.durationS} s` : "";
        const bell = bellWords(entry.bell);
        const who = bell ? `${name} · ${bell}` : name;
        li.textContent = `${when} ${arrow} ${who}: ${logText(entry)}${duration}`;
        li.dataset.status = entry.status;
        if (entry.missed) li.classList.add("missed");
        return li;
      }),
    );
  }

  _renderPush(s) {
    const el = this.el;
    const push = s.push;
    if (!push || !el.pushState) return;
    el.pushState.textContent = push.error ? `${PUSH_TEXT.error} ${push.error}` : PUSH_TEXT[push.state];
    el.pushState.dataset.state = push.state;
    el.pushHint.hidden = !push.homeScreenFirst;
    el.pushHint.textContent = push.homeScreenFirst ? HOME_SCREEN_HINT : "";
    const canEnable = push.state === "off" || push.state === "error";
    el.pushEnable.hidden = !canEnable;
    el.pushEnable.disabled = push.homeScreenFirst;
    el.pushDisable.hidden = push.state !== "on";
    el.pushDoors.replaceChildren(
      ...(push.state === "on" ? Object.entries(push.doors) : []).map(([address, door]) => {
        const li = this.doc.createElement("li");
        const name = s.peers[address]?.name ?? address;
        let text = "waiting for it to come online";
        if (door.error) text = `refused: ${door.error}`;
        else if (door.subscribed === true) text = "rings this phone";
        else if (door.subscribed === false) text = "does not ring this phone";
        else if (door.sent) text = "registering…";
        li.textContent = `${name}: ${text}`;
        li.dataset.address = address;
        return li;
      }),
    );
  }
}
