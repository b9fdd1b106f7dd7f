// The phone's calls: one RTCPeerConnection per call, driven by the messages of
// docs/protocol.md ("Messages", "Call flow", "Door release") the way the Python endpoint
// does it (services/callapi/): early media while ringing (the door's preview plays, the
// phone sends nothing until a person answers), accept, mute, hang up, door release, and
// link supervision with reoffer/reanswer/restart when media is lost (supervision.js).

import { newCallId } from "./protocol/envelope.js";
import { DOOR_OPENED, inviteBell } from "./bell.js";
import { DECLINE_STATUS, FAILURE_REASON, FAILURE_STATUS, STATUS } from "./callstatus.js";
import { doorRelease } from "./door_release.js";
import {
  SecurityFailure,
  checkFingerprints,
  gathered,
  iceErrorText,
  inviteIceServers,
  kindOf,
  mediaError,
  preferCodec,
} from "./peer.js";
import { supervision } from "./supervision.js";

const LATE_TYPES = new Set(["cancel", "hangup", "decline", "busy"]);

const CONNECT_TIMEOUT_MS = 10000;
const RING_TIMEOUT_MS = 30000;
const FAREWELL_REFRESH_MS = 30000;

/**
 * The calls of the phone: at most one at a time.
 *
 * `ui` has `remoteVideo`, `remoteAudio`, `localVideo` (media elements), `changed()`,
 * `showError(text)`, `ring(on, callInfo)`.
 */
export class Phone {
  constructor({ signaling, peers, settings, ui, name, addLog }) {
    this.signaling = signaling;
    this.peers = peers;
    this.settings = settings;
    this.ui = ui;
    this.name = name;
    this.addLog = addLog;
    this.call = null;
    this.lastCall = null;
    this.framesSeen = 0;
    /** Called with each incoming call once it rings (the page's ring requests watch it). */
    this.onRinging = null;
    this._countFrames();
  }

  // snapshot ---------------------------------------------------------------------------------

  /** The current call as plain JSON (the contract's `call`), or null. */
  callSnapshot(call = this.call) {
    if (!call) return null;
    return {
      callId: call.callId,
      direction: call.direction,
      peer: call.peer,
      status: call.status,
      video: call.video,
      muted: { ...call.muted },
      remoteMuted: { ...call.remoteMuted },
      canUnlock: this._canUnlock(call),
      lastUnlock: call.lastUnlock ? { ...call.lastUnlock } : null,
      remoteVideoFrames: call.ended ? call.finalFrames : this.framesSeen - call.framesBase,
      codec: call.codec,
      bell: call.bell ? { ...call.bell } : null,
      endReason: call.endReason,
      endedAt: call.endedAt,
    };
  }

  _countFrames() {
    const video = this.ui.remoteVideo;
    if (!video || !video.requestVideoFrameCallback) return;
    const tick = () => {
      this.framesSeen += 1;
      video.requestVideoFrameCallback(tick);
    };
    video.requestVideoFrameCallback(tick);
  }

  // new calls --------------------------------------------------------------------------------

  _newCall(direction, peer, callId, video) {
    return {
      callId,
      direction,
      peer,
      status: "NONE",
      video,
      sendVideo: false,
      remoteSendsVideo: video,
      muted: { audio: false, video: false },
      remoteMuted: { audio: false, video: false },
      unlockChallenge: null,
      unlockPending: null,
      lastUnlock: null,
      codec: null,
      pc: null,
      generation: 0,
      localStream: null,
      timers: [],
      supervisor: null,
      answeredAt: null,
      startedAt: Date.now(),
      framesBase: this.framesSeen,
      finalFrames: 0,
      ended: false,
      rang: false,
      reconnectingSince: null,
      supervisedSince: null,
      lastAttemptAt: null,
      candidate: null,
      lastMediaAt: null,
      packets: 0,
      farewell: null,
      ringTimeoutMs: RING_TIMEOUT_MS,
      bell: null,
      endReason: null,
      endedAt: null,
    };
  }

  _active() {
    return this.call && !this.call.ended ? this.call : null;
  }

  _newPc(call) {
    const pc = new RTCPeerConnection({
      bundlePolicy: "max-bundle",
      // the invite's relay credentials first (this call only), then the phone's own servers
      iceServers: [...(call.iceServers ?? []), ...(this.settings.iceServers ?? [])],
      iceTransportPolicy: this.settings.iceTransportPolicy === "relay" ? "relay" : "all",
    });
    pc.addEventListener("icecandidateerror", (event) => {
      if (event.url) console.error(`callbox: call ${call.callId}: ${iceErrorText(event)}`);
    });
    return pc;
  }

  /** Play what `pc` receives: video in #remote-video, audio (once answered) in #remote-audio. */
  _attachRemote(call, pc) {
    if (call.ended || call.pc !== pc) return;
    for (const receiver of pc.getReceivers()) {
      const track = receiver.track;
      if (!track) continue;
      if (track.kind === "video") {
        this.ui.remoteVideo.srcObject = new MediaStream([track]);
        this.ui.remoteVideo.play().catch(() => {});
      } else {
        this.ui.remoteAudio.srcObject = new MediaStream([track]);
        if (call.answeredAt) this._playRemoteAudio();
      }
    }
  }

  _watchPc(call, pc) {
    pc.addEventListener("connectionstatechange", () => {
      if (call.pc !== pc || call.ended) return;
      if (pc.connectionState === "connected" && STATUS[call.status] >= STATUS.ANSWER) {
        call.reconnectingSince = null;
        this._setStatus(call, "CONNECTED");
      } else if (pc.connectionState === "failed" && !call.answeredAt && call.direction === "out") {
        this._failed(call, "NETWORKERROR");
      }
    });
  }

  _setStatus(call, status) {
    if (call.ended || call.status === status) return;
    call.status = status;
    console.info(`callbox: call ${call.callId} ${status}`);
    this.ui.changed();
  }

  _timer(call, ms, action) {
    const id = setTimeout(() => {
      if (!call.ended) action();
    }, ms);
    call.timers.push(id);
  }

  async _send(call, type, body) {
    try {
      await this.signaling.send(call.peer, type, call.callId, body);
    } catch (err) {
      console.error(`callbox: could not send ${type} to ${call.peer}: ${err.message}`);
    }
  }

  // incoming calls ---------------------------------------------------------------------------

  async _onInvite(message) {
    if (this._active()) {
      console.info(`callbox: busy, call from ${message.from} refused`);
      await this.signaling
        .send(message.from, "busy", message.callId, {})
        .catch((err) => console.error("callbox: could not send busy", err));
      await this._log({
        callId: message.callId,
        direction: "in",
        peer: message.from,
        status: "BUSY",
        startedAt: Date.now(),
        durationS: 0,
        missed: true,
      });
      return;
    }
    const body = message.body;
    const call = this._newCall("in", message.from, message.callId, body.video === true);
    if (Number.isSafeInteger(body.ring_timeout_ms) && body.ring_timeout_ms > 0) {
      call.ringTimeoutMs = body.ring_timeout_ms;
    }
    if (typeof body.unlock_challenge === "string" && body.unlock_challenge) {
      call.unlockChallenge = body.unlock_challenge;
    }
    call.bell = inviteBell(body.bell, (problem) =>
      console.error(`callbox: call from ${message.from}: ${problem}; ringing without it`),
    );
    const relays = inviteIceServers(body.ice_servers, Date.now() / 1000);
    relays.problems.forEach((p) => console.error(`callbox: call from ${message.from}: refused ${p}`));
    call.iceServers = relays.servers;
    this.call = call;
    this._resetMedia();
    const received = performance.now();
    const ringing = this._send(call, "ringing", {}); // sealed while the answer is made
    let sdp;
    try {
      checkFingerprints(body.sdp);
      const pc = this._newPc(call);
      call.pc = pc;
      this._watchPc(call, pc);
      sdp = await this._answerOffer(call, pc, String(body.sdp));
      this._attachRemote(call, pc);
    } catch (err) {
      const security = err instanceof SecurityFailure;
      console.error(`callbox: refused the offer of ${message.from}: ${err.message}`);
      await ringing;
      await this._send(call, "decline", { reason: "error" });
      this._end(call, security ? "SECURITYERROR" : "ERROR");
      return;
    }
    await ringing;
    if (call.ended) return;
    await this._send(call, "answer", { sdp });
    console.debug(`callbox: answered the offer in ${Math.round(performance.now() - received)} ms`);
    this._setStatus(call, "INCOMING");
    this._startSupervision(call);
    this._timer(call, call.ringTimeoutMs + 5000, () => this._ringTimeout(call));
    this.ui.ring(true, call);
    this.onRinging?.(call);
  }

  /** Answer an offer with sendrecv transceivers; our tracks go in once a person answers. */
  async _answerOffer(call, pc, sdp) {
    await pc.setRemoteDescription({ type: "offer", sdp });
    for (const transceiver of pc.getTransceivers()) {
      transceiver.direction = "sendrecv";
      if (kindOf(transceiver) === "video") preferCodec(transceiver, this.settings.videoCodec);
      const track = this._localTrack(call, kindOf(transceiver));
      if (track) await transceiver.sender.replaceTrack(track);
    }
    await pc.setLocalDescription(await pc.createAnswer());
    await gathered(pc);
    return pc.localDescription.sdp;
  }

  _localTrack(call, kind) {
    if (!call.localStream || !call.answeredAt) return null;
    if (kind === "video" && !call.sendVideo) return null;
    return call.localStream.getTracks().find((t) => t.kind === kind) ?? null;
  }

  async _ringTimeout(call) {
    if (call.answeredAt) return;
    if (call.direction === "in") {
      await this._send(call, "decline", { reason: "timeout" });
      this._end(call, "NOANSWER", { missed: true });
    } else {
      await this._send(call, "cancel", { reason: "timeout" });
      this._end(call, "NOANSWER");
    }
  }

  /** A person answers the ringing call, with or without sending video. */
  async answer({ video = true } = {}) {
    const call = this._active();
    if (!call || call.direction !== "in" || call.answeredAt || call.answering) return;
    call.answering = true;
    this.ui.ring(false, call);
    const wantVideo = video && call.video;
    call.localStream = await this._getMedia(call, wantVideo);
    if (call.ended) {
      this._stopLocal(call);
      return;
    }
    call.sendVideo = wantVideo && call.localStream.getVideoTracks().length > 0;
    call.answeredAt = Date.now();
    for (const track of call.localStream.getTracks()) {
      track.enabled = !call.muted[track.kind];
    }
    for (const transceiver of call.pc.getTransceivers()) {
      const track = this._localTrack(call, kindOf(transceiver));
      if (track) await transceiver.sender.replaceTrack(track);
    }
    this.ui.localVideo.srcObject = call.sendVideo ? call.localStream : null;
    this._playRemoteAudio();
    await this._send(call, "accept", { video: call.sendVideo });
    this._setStatus(call, "ANSWER");
    if (call.pc.connectionState === "connected") this._setStatus(call, "CONNECTED");
    this._afterAnswer(call);
  }

  /** Camera and microphone as available: a refusal is shown, the call goes on without. */
  async _getMedia(call, video) {
    try {
      return await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true },
        video: video ? { width: { ideal: 640 }, height: { ideal: 480 } } : false,
      });
    } catch (err) {
      console.warn("callbox: getUserMedia failed", err);
      if (video) {
        this.ui.showError(`${mediaError(err, "camera")} Answering without video.`);
        try {
          return await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
        } catch (err2) {
          this.ui.showError(`${mediaError(err2, "microphone")} The visitor cannot hear you.`);
        }
      } else {
        this.ui.showError(`${mediaError(err, "microphone")} The visitor cannot hear you.`);
      }
      call.muted.audio = true;
      return new MediaStream();
    }
  }

  _playRemoteAudio() {
    const audio = this.ui.remoteAudio;
    audio.muted = false;
    audio.play().catch((err) => console.warn("callbox: cannot play the call's audio yet", err));
  }

  /** Refuse the ringing call. */
  async decline() {
    const call = this._active();
    if (!call) return;
    if (call.direction === "in" && !call.answeredAt) {
      await this._send(call, "decline", { reason: "declined" });
      this._end(call, "CANCEL");
    } else {
      await this.hangup();
    }
  }

  // outgoing calls ("view door") --------------------------------------------------------------

  /** Call a door to see and hear it ("monitor"); the microphone starts muted. */
  async viewDoor(address = null) {
    const peer = address ?? this.peers.firstDoor();
    if (this._active()) throw new Error("a call is in progress");
    if (!peer) throw new Error("no door is paired with this phone");
    const entry = this.peers.get(peer);
    if (entry?.keyChanged) {
      this.ui.showError(`The keys of ${entry.name} changed: compare the safety number first.`);
      return null;
    }
    if (!entry?.pinnedKeys) {
      this.ui.showError(`${entry?.name ?? peer} has not announced the keys of the pairing yet.`);
      return null;
    }
    const call = this._newCall("out", peer, newCallId(), true);
    call.muted = { audio: true, video: true };
    this.call = call;
    this._resetMedia();
    this._setStatus(call, "INPROGRESS");
    if (!entry.online) {
      this.ui.showError(`${entry.name} is offline.`);
      this._end(call, "OFFLINE");
      return call.callId;
    }
    try {
      call.localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    } catch (err) {
      this.ui.showError(`${mediaError(err, "microphone")} You can watch but not talk.`);
      call.localStream = new MediaStream();
    }
    for (const track of call.localStream.getTracks()) track.enabled = false;
    if (call.ended) {
      this._stopLocal(call);
      return call.callId;
    }
    let sdp;
    try {
      const pc = this._newPc(call);
      call.pc = pc;
      this._watchPc(call, pc);
      sdp = await this._makeOffer(call, pc);
      this._attachRemote(call, pc);
    } catch (err) {
      console.error("callbox: could not make an offer", err);
      this.ui.showError(`Could not start the call: ${err.message}`);
      this._end(call, "ERROR");
      return call.callId;
    }
    if (call.ended) return call.callId;
    await this._send(call, "invite", {
      sdp,
      video: true,
      profile: { name: this.name, role: "web" },
      ring_timeout_ms: RING_TIMEOUT_MS,
    });
    this._timer(call, CONNECT_TIMEOUT_MS, () => {
      if (!call.rang) {
        this._send(call, "cancel", { reason: "unreachable" });
        this._end(call, "UNREACHABLE");
      }
    });
    this._timer(call, RING_TIMEOUT_MS, () => this._ringTimeout(call));
    this._startSupervision(call);
    return call.callId;
  }

  async _makeOffer(call, pc) {
    const audio = call.localStream.getAudioTracks()[0];
    pc.addTransceiver(audio ?? "audio", { direction: "sendrecv" });
    const video = pc.addTransceiver("video", { direction: "recvonly" });
    preferCodec(video, this.settings.videoCodec);
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    return pc.localDescription.sdp;
  }

  async _onAnswer(call, body) {
    if (call.direction !== "out") return;
    if (typeof body.unlock_challenge === "string" && body.unlock_challenge && !call.unlockChallenge) {
      call.unlockChallenge = body.unlock_challenge; // we called a door ("monitor")
    }
    try {
      checkFingerprints(body.sdp);
      await call.pc.setRemoteDescription({ type: "answer", sdp: String(body.sdp) });
    } catch (err) {
      const security = err instanceof SecurityFailure;
      console.error(`callbox: bad answer from ${call.peer}: ${err.message}`);
      await this._failed(call, security ? "SECURITYERROR" : "ERROR");
      return;
    }
    this.ui.changed();
  }

  async _onAccept(call, body) {
    if (call.direction !== "out" || call.answeredAt) return;
    call.answeredAt = Date.now();
    call.remoteSendsVideo = call.video && body.video !== false;
    this._playRemoteAudio();
    this._setStatus(call, "ANSWER");
    if (call.pc.connectionState === "connected") this._setStatus(call, "CONNECTED");
    await this._send(call, "mute", { ...call.muted });
    this._afterAnswer(call);
  }

  // controls ---------------------------------------------------------------------------------

  /** Mute or unmute the microphone and/or camera; the peer is told the full state. */
  async setMuted({ audio, video } = {}) {
    const call = this._active();
    if (!call) return;
    if (typeof audio === "boolean") call.muted.audio = audio;
    if (typeof video === "boolean") call.muted.video = video;
    for (const track of call.localStream?.getTracks() ?? []) track.enabled = !call.muted[track.kind];
    this.ui.changed();
    if (call.pc) await this._send(call, "mute", { ...call.muted });
  }

  /** End the call: decline while it rings here, cancel while it rings there, or hang up. */
  async hangup() {
    const call = this._active();
    if (!call) return;
    if (call.direction === "in" && !call.answeredAt) {
      await this._send(call, "decline", { reason: "declined" });
      this._end(call, "CANCEL");
    } else if (call.direction === "out" && !call.answeredAt) {
      if (call.pc) await this._send(call, "cancel", { reason: "caller" });
      this._end(call, "CANCEL");
    } else {
      await this._send(call, "hangup", { reason: "user" });
      this._end(call, "COMPLETE");
    }
  }

  // inbound messages -------------------------------------------------------------------------

  /** A verified message from a pinned peer. */
  async onMessage(message) {
    if (message.type === "invite") {
      await this._onInvite(message);
      return;
    }
    const call = this.call;
    if (!call || call.callId !== message.callId || call.peer !== message.from || call.ended) {
      const namesActive = call && !call.ended && call.callId === message.callId;
      if (LATE_TYPES.has(message.type) && !namesActive) {
        console.info(`callbox: late ${message.type} from ${message.from} ignored`);
        return;
      }
      this.signaling.reject({
        reason: "wrong_call",
        message: `message rejected (wrong_call): ${message.type} from ${message.from} for call ${message.callId}, which is not a call with that peer`,
        claimed: null,
      });
      return;
    }
    const body = message.body;
    switch (message.type) {
      case "ringing":
        if (call.direction === "out") {
          call.rang = true;
          this._setStatus(call, "RINGING");
        }
        break;
      case "answer":
        await this._onAnswer(call, body);
        break;
      case "accept":
        await this._onAccept(call, body);
        break;
      case "busy":
        if (call.direction === "out") this._end(call, "BUSY");
        break;
      case "decline":
        if (call.direction === "out") {
          this._end(call, DECLINE_STATUS[String(body.reason)] ?? "BUSY");
        }
        break;
      case "cancel":
        this._onCancel(call, body);
        break;
      case "hangup":
        this._onHangup(call, body);
        break;
      case "mute":
        call.remoteMuted = { audio: body.audio === true, video: body.video === true };
        this.ui.changed();
        break;
      case "reoffer":
        await this._onReoffer(call, body);
        break;
      case "reanswer":
        await this._onReanswer(call, body);
        break;
      case "restart":
        await this._onRestart(call);
        break;
      case "unlock_result":
        this._onUnlockResult(call, body);
        break;
      case "unlock":
        await this._send(call, "unlock_result", {
          opened: false,
          reason: "no door relay on this endpoint",
        });
        break;
      default:
        console.info(`callbox: ${message.type} from ${message.from} ignored`);
    }
  }

  _onCancel(call, body) {
    if (call.direction !== "in") return;
    const reason = String(body.reason ?? "caller");
    call.endReason = reason;
    if (FAILURE_STATUS[reason]) {
      this._end(call, FAILURE_STATUS[reason]);
    } else if (call.answeredAt && reason !== "answered_elsewhere") {
      this._end(call, "COMPLETE");
    } else {
      // the door opened while it rang (a resident, the exit button, a code, a card): no one
      // is waiting any more, so it is no missed call
      this._end(call, reason === "timeout" ? "NOANSWER" : "CANCEL", {
        missed: reason !== "answered_elsewhere" && reason !== DOOR_OPENED,
      });
    }
  }

  _onHangup(call, body) {
    const reason = String(body.reason ?? "user");
    call.endReason = reason;
    if (FAILURE_STATUS[reason]) this._end(call, FAILURE_STATUS[reason]);
    else if (!call.answeredAt && call.direction === "in") this._end(call, "CANCEL", { missed: true });
    else if (reason === "duration") this._end(call, "DURATIONEXCEEDED");
    else this._end(call, "COMPLETE");
  }

  /** The broker says a peer came or went (its last will says offline). */
  onPresence(address, online) {
    const call = this._active();
    if (!call || address !== call.peer) return;
    if (online) {
      if (call.answeredAt) this._peerOnline(call);
      return;
    }
    if (call.direction === "in" && !call.answeredAt) this._end(call, "CANCEL", { missed: true });
    else if (call.answeredAt) this._peerOffline(call);
    else if (call.pc) this._end(call, "OFFLINE");
  }

  /**
   * A message naming this call failed verification: dropped (counted in `rejections`), it
   * never changes the call, since anyone can forge one (docs/protocol.md). Only the peer's
   * media (a DTLS fingerprint that is not the signed one) ends a call with SECURITYERROR.
   */
  onRejected(err) {
    const call = this._active();
    if (!err || !call || !err.claimed || err.claimed.callId !== call.callId) return;
    console.warn(
      `callbox: call ${call.callId} goes on: a message claiming to be from ${err.claimed.from} ` +
        `failed verification (${err.reason})`,
    );
  }

  /** This side gives up on the call because of a failure; the peer is told why. */
  async _failed(call, status) {
    if (call.ended) return;
    const reason = FAILURE_REASON[status] ?? "error";
    let type = "hangup";
    if (!call.answeredAt) type = call.direction === "in" ? "decline" : "cancel";
    const end = this._end(call, status);
    await this._send(call, type, { reason });
    return end;
  }

  _afterAnswer(call) {
    const refresh = async () => {
      if (call.ended) return;
      try {
        call.farewell = await this.signaling.seal(call.peer, "hangup", call.callId, {
          reason: "user",
        });
      } catch (err) {
        console.warn("callbox: could not prepare the farewell", err);
      }
      if (!call.ended) call.timers.push(setTimeout(refresh, FAREWELL_REFRESH_MS));
    };
    refresh();
  }

  /** Envelopes to publish if the page goes away right now (a hangup of the answered call). */
  farewell() {
    const call = this._active();
    return call?.answeredAt && call.farewell ? [call.farewell] : [];
  }

  // ending -----------------------------------------------------------------------------------

  _stopLocal(call) {
    for (const track of call.localStream?.getTracks() ?? []) track.stop();
  }

  _resetMedia() {
    this.ui.remoteVideo.srcObject = null;
    this.ui.remoteAudio.srcObject = null;
    this.ui.remoteAudio.muted = true;
    this.ui.localVideo.srcObject = null;
  }

  _end(call, status, { missed = false } = {}) {
    if (call.ended) return;
    call.finalFrames = this.framesSeen - call.framesBase;
    call.status = status;
    call.ended = true;
    call.endedAt = Date.now();
    console.info(`callbox: call ${call.callId} ${status}`);
    for (const id of call.timers) clearTimeout(id);
    clearTimeout(call.supervisor);
    this.ui.ring(false, call);
    this._stopLocal(call);
    call.candidate?.pc.close();
    call.pc?.close();
    this._resetMedia();
    this.lastCall = this.callSnapshot(call);
    if (this.call === call) this.call = null;
    this._log({
      callId: call.callId,
      direction: call.direction,
      peer: call.peer,
      status,
      startedAt: call.startedAt,
      durationS: call.answeredAt ? Math.round((Date.now() - call.answeredAt) / 1000) : 0,
      missed,
      ...(call.bell ? { bell: { ...call.bell } } : {}),
      ...(call.endReason === DOOR_OPENED ? { endReason: DOOR_OPENED } : {}),
    });
    this.ui.changed();
  }

  async _log(entry) {
    try {
      await this.addLog(entry);
    } catch (err) {
      console.warn("callbox: could not write the call log", err);
    }
    this.ui.changed();
  }
}

Object.assign(Phone.prototype, supervision, doorRelease);
