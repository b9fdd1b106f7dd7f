// Link supervision of an answered call, as the Python endpoint does it
// (services/callapi/supervision.py, docs/protocol.md): no media for 1 s after the answer
// while the peer is not muted, or a failed transport, shows RECONNECTING. The old peer
// connection is kept (after an outage with unchanged addresses media resumes on it) while a
// fresh one is tried, make before break, every 2 s and when the peer is back online: the
// caller sends `reoffer`, the callee answers `reanswer` and, when it lost the caller's media,
// asks with `restart`. A fresh connection replaces the old one once it connected. The peer's
// last will is weighed against its media: an outage is ridden out, a peer whose media
// stopped with its will is gone. After the grace period the call ends with NETWORKERROR.
// Mixed into Phone (call.js): `this` is the phone.

import { checkFingerprints, SecurityFailure } from "./peer.js";

const MEDIA_SILENCE_MS = 1000;
const WATCHDOG_MS = 200;
const RECONNECT_GRACE_MS = 30000;
const RESTART_RETRY_MS = 2000;
const PROCESS_GONE_WINDOW_MS = 1000;
const GONE_CONFIRM_MS = 300;
const GONE_SILENCE_MS = 300;

export const supervision = {
  _startSupervision(call) {
    call.supervisedSince = performance.now();
    const tick = async () => {
      if (call.ended) return;
      try {
        await this._watchdog(call);
      } catch (err) {
        console.warn("callbox: link check failed", err);
      }
      if (!call.ended) call.supervisor = setTimeout(tick, WATCHDOG_MS);
    };
    call.supervisor = setTimeout(tick, WATCHDOG_MS);
  },

  /** Count the packets the current connection received; note when they last grew. */
  async _pollMedia(call) {
    const pc = call.pc;
    if (!pc) return null;
    const stats = await pc.getStats();
    let packets = 0;
    let codecId = null;
    stats.forEach((report) => {
      if (report.type === "inbound-rtp") {
        packets += report.packetsReceived ?? 0;
        if (report.kind === "video" && report.codecId) codecId = report.codecId;
      }
    });
    if (call.ended || pc !== call.pc) return null;
    if (codecId && stats.get(codecId)) {
      const codec = stats.get(codecId).mimeType;
      if (codec !== call.codec) {
        call.codec = codec;
        this.ui.changed();
      }
    }
    if (packets > call.packets) {
      call.packets = packets;
      call.lastMediaAt = performance.now();
    }
    return pc;
  },

  async _watchdog(call) {
    const pc = await this._pollMedia(call);
    const now = performance.now();
    if (!call.answeredAt) call.supervisedSince = now; // silence counts from the answer
    if (!pc || !call.answeredAt) return;
    const lost = this._linkLost(call, pc, now);
    if (call.reconnectingSince === null) {
      if (lost) {
        call.reconnectingSince = now;
        this._setStatus(call, "RECONNECTING");
        await this._attempt(call);
      }
    } else if (!lost) {
      this._back(call);
    } else if (now - call.reconnectingSince > RECONNECT_GRACE_MS) {
      await this._send(call, "hangup", { reason: "network" });
      this._end(call, "NETWORKERROR");
    } else if (now - (call.lastAttemptAt ?? 0) >= RESTART_RETRY_MS) {
      await this._attempt(call);
    }
  },

  _linkLost(call, pc, now) {
    if (pc.connectionState === "failed" || pc.connectionState === "closed") return true;
    const muted = call.remoteMuted;
    if (muted.audio && (muted.video || !call.remoteSendsVideo)) return false;
    const since = Math.max(call.lastMediaAt ?? 0, call.supervisedSince ?? 0);
    return now - since > MEDIA_SILENCE_MS;
  },

  /** Media flows again: forget the outage (the caller drops a fresh connection not needed). */
  _back(call) {
    call.reconnectingSince = null;
    call.supervisedSince = performance.now();
    if (call.direction === "out") this._dropCandidate(call);
    this._setStatus(call, "CONNECTED");
  },

  /** Try a fresh path: the caller re-offers, the callee asks the caller to. */
  async _attempt(call) {
    call.lastAttemptAt = performance.now();
    if (call.direction === "out") await this._reoffer(call);
    else await this._send(call, "restart", { generation: call.generation });
  },

  /** The broker says the peer is gone (its last will) during the answered call. */
  async _peerOffline(call) {
    const willAt = performance.now();
    if (call.lastMediaAt === null || willAt - call.lastMediaAt > PROCESS_GONE_WINDOW_MS) {
      console.warn(`callbox: ${call.peer} lost its broker connection after its media: riding it out`);
      if (call.reconnectingSince === null) {
        call.reconnectingSince = willAt;
        this._setStatus(call, "RECONNECTING");
      }
      return;
    }
    // Packets already on their way when the peer died may still be counted: look twice.
    const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
    await sleep(GONE_CONFIRM_MS);
    await this._pollMedia(call);
    const before = call.packets;
    await sleep(GONE_SILENCE_MS);
    await this._pollMedia(call);
    if (call.ended || call.packets > before) return;
    console.warn(`callbox: ${call.peer} closed its broker connection and its media stopped: gone`);
    this._end(call, "NETWORKERROR");
  },

  /** The peer is online again: a reconnecting call tries a fresh path at once. */
  async _peerOnline(call) {
    if (call.reconnectingSince !== null) await this._attempt(call);
  },

  async _onRestart(call) {
    if (call.direction !== "out" || !call.answeredAt || call.reconnectingSince !== null) return;
    if (performance.now() - (call.lastAttemptAt ?? 0) < RESTART_RETRY_MS) return;
    call.lastAttemptAt = performance.now();
    await this._reoffer(call);
  },

  _swapPc(call, pc) {
    const old = call.pc;
    call.pc = pc;
    call.packets = 0;
    call.lastMediaAt = null;
    old?.close();
    this._attachRemote(call, pc);
  },

  /** Follow a fresh connection: it replaces the call's once it connected. */
  _adopt(call, pc, generation) {
    this._dropCandidate(call);
    call.candidate = { pc, generation };
    this._watchPc(call, pc);
    pc.addEventListener("connectionstatechange", () => {
      if (call.ended || call.candidate?.pc !== pc) return;
      if (pc.connectionState === "connected") {
        call.candidate = null;
        call.generation = generation;
        this._swapPc(call, pc);
        this._back(call);
      } else if (pc.connectionState === "failed" || pc.connectionState === "closed") {
        this._dropCandidate(call);
      }
    });
  },

  _dropCandidate(call) {
    const candidate = call.candidate;
    call.candidate = null;
    candidate?.pc.close();
  },

  async _reoffer(call) {
    const generation = Math.max(call.generation, call.candidate?.generation ?? 0) + 1;
    const pc = this._newPc(call);
    let sdp;
    try {
      sdp = await this._makeOffer(call, pc);
    } catch (err) {
      console.error("callbox: reoffer failed", err);
      pc.close();
      return;
    }
    if (call.ended) {
      pc.close();
      return;
    }
    this._adopt(call, pc, generation);
    await this._send(call, "reoffer", { sdp, generation });
  },

  async _onReoffer(call, body) {
    if (call.direction !== "in" || !call.answeredAt) return;
    const generation = body.generation;
    const newest = Math.max(call.generation, call.candidate?.generation ?? 0);
    if (!Number.isSafeInteger(generation) || generation <= newest) {
      console.warn(`callbox: stale reoffer ${generation} ignored`);
      return;
    }
    const pc = this._newPc(call);
    let sdp;
    try {
      checkFingerprints(body.sdp);
      sdp = await this._answerOffer(call, pc, String(body.sdp));
    } catch (err) {
      pc.close();
      if (err instanceof SecurityFailure) {
        await this._failed(call, "SECURITYERROR");
      } else {
        console.error(`callbox: bad reoffer from ${call.peer}: ${err.message}`);
      }
      return;
    }
    if (call.ended) {
      pc.close();
      return;
    }
    this._adopt(call, pc, generation);
    await this._send(call, "reanswer", { sdp, generation });
  },

  async _onReanswer(call, body) {
    const candidate = call.candidate;
    if (call.direction !== "out" || !candidate || body.generation !== candidate.generation) return;
    try {
      checkFingerprints(body.sdp);
      await candidate.pc.setRemoteDescription({ type: "answer", sdp: String(body.sdp) });
    } catch (err) {
      if (err instanceof SecurityFailure) await this._failed(call, "SECURITYERROR");
      else console.error(`callbox: bad reanswer from ${call.peer}: ${err.message}`);
    }
  },
};
