// Link supervision of an answered call, as the Python endpoint does it
// (services/callapi/supervision.py): no media for 1 s while the peer is not muted, or a
// failed transport, shows RECONNECTING; the caller sends `reoffer` with a fresh session
// and the callee `reanswer`; after the grace period the call ends with NETWORKERROR.
// Mixed into Phone (call.js): `this` is the phone.

import { checkFingerprints, SecurityFailure } from "./peer.js";

const MEDIA_SILENCE_MS = 1000;
const WATCHDOG_MS = 200;
const RECONNECT_GRACE_MS = 10000;

export const supervision = {
  _startSupervision(call) {
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

  async _watchdog(call) {
    const pc = call.pc;
    if (!pc) return;
    const stats = await pc.getStats();
    let packets = 0;
    let codecId = null;
    stats.forEach((report) => {
      if (report.type === "inbound-rtp") {
        packets += report.packetsReceived ?? 0;
        if (report.kind === "video" && report.codecId) codecId = report.codecId;
      }
    });
    if (call.ended || pc !== call.pc) return;
    if (codecId && stats.get(codecId)) {
      const codec = stats.get(codecId).mimeType;
      if (codec !== call.codec) {
        call.codec = codec;
        this.ui.changed();
      }
    }
    const now = performance.now();
    if (packets > call.packets) {
      call.packets = packets;
      call.lastMediaAt = now;
      if (call.reconnectingSince !== null && pc.connectionState === "connected") {
        call.reconnectingSince = null;
        this._setStatus(call, "CONNECTED");
      }
    }
    if (!call.answeredAt) return;
    if (call.reconnectingSince !== null) {
      if (now - call.reconnectingSince > RECONNECT_GRACE_MS) {
        await this._send(call, "hangup", { reason: "network" });
        this._end(call, "NETWORKERROR");
      }
    } else if (this._linkLost(call, pc, now)) {
      call.reconnectingSince = now;
      this._setStatus(call, "RECONNECTING");
      if (call.direction === "out") await this._reoffer(call);
    }
  },

  _linkLost(call, pc, now) {
    if (pc.connectionState === "failed") return true;
    const muted = call.remoteMuted;
    if (muted.audio && (muted.video || !call.remoteSendsVideo)) return false;
    return call.lastMediaAt !== null && now - call.lastMediaAt > MEDIA_SILENCE_MS;
  },

  _swapPc(call, pc) {
    const old = call.pc;
    call.pc = pc;
    call.packets = 0;
    call.lastMediaAt = null;
    old?.close();
    this._attachRemote(call, pc);
  },

  async _reoffer(call) {
    call.generation += 1;
    const generation = call.generation;
    const pc = this._newPc();
    this._watchPc(call, pc);
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
    this._swapPc(call, pc);
    await this._send(call, "reoffer", { sdp, generation });
  },

  async _onReoffer(call, body) {
    if (call.direction !== "in" || !call.answeredAt) return;
    const generation = body.generation;
    if (!Number.isSafeInteger(generation) || generation <= call.generation) {
      console.warn(`callbox: stale reoffer ${generation} ignored`);
      return;
    }
    const pc = this._newPc();
    this._watchPc(call, pc);
    let sdp;
    try {
      checkFingerprints(body.sdp);
      call.generation = generation; // the new pc's tracks belong to this generation
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
    this._swapPc(call, pc);
    if (call.reconnectingSince === null) {
      call.reconnectingSince = performance.now();
      this._setStatus(call, "RECONNECTING");
    }
    await this._send(call, "reanswer", { sdp, generation });
  },

  async _onReanswer(call, body) {
    if (call.direction !== "out" || body.generation !== call.generation) return;
    try {
      checkFingerprints(body.sdp);
      await call.pc.setRemoteDescription({ type: "answer", sdp: String(body.sdp) });
    } catch (err) {
      if (err instanceof SecurityFailure) await this._failed(call, "SECURITYERROR");
      else console.error(`callbox: bad reanswer from ${call.peer}: ${err.message}`);
    }
  },
};
