// Bootstrap of the browser phone: read the pairing link, keep it (and the identity made
// once) in IndexedDB, connect to the site broker, and expose `window.callbox` (the page's
// actions and a JSON snapshot of its state, which the browser tests read).

import { Phone } from "./call.js";
import { PushRegistration, pushKeyBytes } from "./push.js";
import { RingRequest, ringFromUrl } from "./ring_request.js";
import { Peers, Signaling } from "./signaling.js";
import { SiteDirectory } from "./directory.js";
import { Store } from "./store.js";
import { Ui } from "./ui.js";
import * as b64u from "./protocol/b64u.js";
import { parseJson } from "./protocol/canonical.js";
import { seal } from "./protocol/envelope.js";
import { Identity } from "./protocol/identity.js";
import { adminKeyBytes } from "./protocol/directory.js";
import { normalizeFingerprint } from "./protocol/keys.js";

const NAME = /^[a-z0-9_.-]{1,64}$/;
const CODECS = new Set(["VP8", "H264"]);
// The site CA's SHA-256 as `callbox ca show` prints it (and phones show it): AB:CD:…
const SITE_CA = /^[0-9A-F]{2}(:[0-9A-F]{2}){31}$/;

/** The pairing in `#pair=…`, checked field by field (throws an Error naming the problem). */
export function parsePairing(encoded) {
  let pairing;
  try {
    pairing = parseJson(new TextDecoder("utf-8", { fatal: true }).decode(b64u.decode(encoded)));
  } catch (err) {
    throw new Error(`The pairing link is damaged (${err.message}): copy it again.`);
  }
  const bad = (what) => {
    throw new Error(`The pairing link is not valid: ${what}. Make a new one with "callbox keys pair-web".`);
  };
  if (pairing === null || typeof pairing !== "object" || Array.isArray(pairing)) bad("not an object");
  if (pairing.v !== 1) bad(`version ${JSON.stringify(pairing.v)} is not 1`);
  for (const field of ["site", "address"]) {
    if (typeof pairing[field] !== "string" || !NAME.test(pairing[field])) bad(`bad ${field}`);
  }
  for (const field of ["name", "username", "password", "broker"]) {
    if (typeof pairing[field] !== "string") bad(`${field} missing`);
  }
  if (!/^wss?:\/\//.test(pairing.broker)) bad("the broker URL must start with ws:// or wss://");
  const ca = pairing.ca ?? "";
  if (typeof ca !== "string" || (ca && !SITE_CA.test(ca))) bad("the site CA fingerprint is not 32 hex pairs");
  const pushKey = pairing.push_key ?? "";
  if (typeof pushKey !== "string") bad("the push key is not a string");
  if (pushKey) {
    try {
      pushKeyBytes(pushKey);
    } catch (err) {
      bad(`the push key is ${err.message}`);
    }
  }
  const adminKey = pairing.admin_key ?? "";
  if (typeof adminKey !== "string") bad("the site admin key is not a string");
  if (adminKey) {
    try {
      adminKeyBytes(adminKey);
    } catch (err) {
      bad(`the site ${err.message}`);
    }
  }
  if (!Array.isArray(pairing.peers)) bad("peers missing");
  const peers = pairing.peers.map((peer) => {
    if (!peer || typeof peer.address !== "string" || !NAME.test(peer.address)) bad("a peer has a bad address");
    let fingerprint;
    try {
      fingerprint = normalizeFingerprint(peer.fingerprint);
    } catch {
      bad(`the fingerprint of ${peer.address} is not 32 hex digits`);
    }
    return {
      address: peer.address,
      name: typeof peer.name === "string" && peer.name ? peer.name : peer.address,
      role: typeof peer.role === "string" ? peer.role : "",
      fingerprint,
    };
  });
  return {
    v: 1,
    site: pairing.site,
    address: pairing.address,
    name: pairing.name || pairing.address,
    broker: pairing.broker,
    username: pairing.username,
    password: pairing.password,
    peers,
    ca,
    push_key: pushKey,
    admin_key: adminKey,
  };
}

/**
 * Not paired: show a field for the pairing link. A Home Screen app (iOS keeps its storage apart
 * from Safari's) has no address bar to open the link in; pasting it pairs the app.
 */
function offerPasting() {
  const form = document.getElementById("pair-form");
  const input = document.getElementById("pair-link");
  if (!form || !input) return;
  form.hidden = false;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const match = /#pair=(.+)$/s.exec(input.value.trim());
    try {
      if (!match) throw new Error('The text is not a pairing link: it must contain "#pair=".');
      parsePairing(match[1]);
    } catch (err) {
      app.ui.showError(err.message);
      return;
    }
    location.hash = `pair=${match[1]}`;
    location.reload();
  });
}

/**
 * Register the service worker (web/src/sw.js, served as /sw.js: its scope is the page's root)
 * that caches the page's shell and shows the door's push notifications. Null without one.
 */
async function registerWorker() {
  if (!("serviceWorker" in navigator)) return null;
  try {
    await navigator.serviceWorker.register("/sw.js", { scope: "/" });
    return await navigator.serviceWorker.ready;
  } catch (err) {
    console.warn("callbox: no service worker (no offline page, no push)", err);
    return null;
  }
}

class App {
  constructor() {
    this.ui = new Ui(document);
    this.ui.snapshot = () => this.snapshot();
    this.store = null;
    this.pairing = null;
    this.identity = null;
    this.fingerprint = null;
    this.peers = null;
    this.directory = null;
    this.signaling = null;
    this.phone = null;
    this.push = null;
    this.ringRequest = null;
    this.worker = registerWorker();
    this.log = [];
    this.connection = "connecting";
    this.connectionError = null;
  }

  async start() {
    this.store = await Store.open();
    await this._pairing();
    await this._identity();
    this.settings = await this.store.settings();
    this.log = await this.store.log();
    this.peers = new Peers({
      pairing: this.pairing,
      pinned: await this.store.pinned(),
      ownKeys: this.identity.publicKeys,
      save: (pinned) => this.store.savePinned(pinned),
      onChange: () => {
        this.ui.changed();
        this.push?.sync();
      },
    });
    this.directory = new SiteDirectory({
      pairing: this.pairing,
      store: this.store,
      peers: this.peers,
      follow: (change) => this.signaling.followDirectory(change),
    });
    await this.directory.load();
    this.signaling = new Signaling({
      pairing: this.pairing,
      identity: this.identity,
      peers: this.peers,
      onMessage: (message) => this._message(message),
      onRejected: (err) => this.phone.onRejected(err),
      onState: (state, error) => this._connectionState(state, error),
      onPresence: (address, online) => this.phone.onPresence(address, online),
      onDirectory: (payload) => this.directory.receive(payload),
    });
    this.phone = new Phone({
      signaling: this.signaling,
      peers: this.peers,
      settings: this.settings,
      ui: this.ui,
      name: this.pairing.name,
      addLog: async (entry) => {
        this.log = [entry, ...this.log].slice(0, 100);
        this.log = await this.store.addLog(entry);
      },
    });
    this.push = new PushRegistration({
      pairing: this.pairing,
      signaling: this.signaling,
      peers: this.peers,
      store: this.store,
      onChange: () => this.ui.changed(),
    });
    this.ringRequest = new RingRequest({ phone: this.phone, ui: this.ui });
    this.phone.onRinging = (call) => this.ringRequest.ringing(call);
    this._ringFromUrl();
    this._listenToWorker();
    this.ui.bind(actions);
    window.addEventListener("pagehide", () => this.signaling.farewell(this.phone.farewell()));
    this.ui.changed();
    this.worker
      .then((registration) => this.push.start(registration))
      .catch((err) => console.warn("callbox: push registration check failed", err));
    await this.signaling.connect();
  }

  /** Opened from a notification (`?ring=<call id>&action=…`): join that call when invited. */
  _ringFromUrl() {
    const ring = ringFromUrl(location.href);
    if (location.search) history.replaceState(null, "", location.pathname + location.hash);
    if (ring) this.ringRequest.want(ring);
  }

  /** The worker tells an open page which call a notification click was for. */
  _listenToWorker() {
    if (!("serviceWorker" in navigator)) return;
    navigator.serviceWorker.addEventListener("message", (event) => {
      const data = event.data ?? {};
      if (data.type === "callbox-ring") {
        const url = new URL("/", location.origin);
        url.searchParams.set("ring", String(data.callId ?? ""));
        url.searchParams.set("action", String(data.action ?? ""));
        const ring = ringFromUrl(url.href);
        if (ring) this.ringRequest.want(ring);
      } else if (data.type === "callbox-push") {
        console.info(`callbox: ${data.door} rings (push ${data.callId}); its invite follows`);
      }
    });
    navigator.serviceWorker.startMessages();
  }

  /** A verified message: push registration replies here, everything else to the calls. */
  async _message(message) {
    if (message.type === "push_status") {
      this.push.onStatus(message);
      return;
    }
    await this.phone.onMessage(message);
  }

  async _pairing() {
    const match = /^#pair=(.*)$/s.exec(location.hash);
    if (match) {
      history.replaceState(null, "", location.pathname + location.search);
      const pairing = parsePairing(match[1]);
      const previous = await this.store.pairing();
      await this.store.savePairing(pairing);
      if (previous) {
        // keep the pins that the new pairing still vouches for
        const pinned = await this.store.pinned();
        const kept = {};
        for (const peer of pairing.peers) if (pinned[peer.address]) kept[peer.address] = pinned[peer.address];
        await this.store.savePinned(kept);
      }
    }
    this.pairing = await this.store.pairing();
    if (!this.pairing) {
      offerPasting();
      throw new Error(
        'This phone is not paired yet: open the pairing link that "callbox keys pair-web" prints.',
      );
    }
  }

  async _identity() {
    const stored = await this.store.identity();
    if (stored) {
      this.identity = Identity.fromStored(stored);
    } else {
      this.identity = await Identity.generate();
      await this.store.saveIdentity(this.identity.toStored());
    }
    this.fingerprint = await this.identity.publicKeys.fingerprint();
  }

  _connectionState(state, error) {
    this.connection = state;
    if (state === "online") this.push?.sync();
    if (error) {
      if (this.connectionError !== error) this.ui.showError(error);
      this.connectionError = error;
    } else if (this.connectionError) {
      this.ui.clearError(this.connectionError);
      this.connectionError = null;
    }
    this.ui.changed();
  }

  snapshot() {
    return {
      address: this.pairing?.address ?? null,
      fingerprint: this.fingerprint,
      siteCa: this.pairing?.ca || null,
      keyText: this.identity?.publicKeys.keyText() ?? null,
      connection: this.connection,
      error: this.ui.error,
      peers: this.peers?.snapshot() ?? {},
      directory: this.directory?.snapshot() ?? null,
      call: this.phone?.callSnapshot() ?? null,
      lastCall: this.phone?.lastCall ?? null,
      log: this.log.map((entry) => ({ ...entry })),
      push: this.push?.snapshot() ?? null,
      ringRequest: this.ringRequest?.snapshot() ?? null,
      controlled: Boolean(navigator.serviceWorker?.controller),
      rejections: { ...(this.signaling?.rejections ?? {}) },
      dropped: { ...(this.signaling?.dropped ?? {}) },
    };
  }
}

const app = new App();

function needPhone() {
  if (!app.phone) throw new Error("the phone is not ready");
  return app.phone;
}

const actions = {
  answer: (options = {}) => needPhone().answer({ video: options.video !== false }),
  decline: () => needPhone().decline(),
  hangup: () => needPhone().hangup(),
  setMuted: (muted = {}) => needPhone().setMuted(muted),
  openDoor: () => needPhone().openDoor(),
  viewDoor: (address) => needPhone().viewDoor(address ?? null),
  enablePush: () => {
    if (!app.push) throw new Error("the phone is not ready");
    return app.push.enable();
  },
  disablePush: () => {
    if (!app.push) throw new Error("the phone is not ready");
    return app.push.disable();
  },
  confirmKeyChange: async (address) => {
    await app.peers.confirm(address);
    app.ui.changed();
  },
  setVideoCodec: async (codec) => {
    if (!CODECS.has(codec)) throw new Error(`video codec ${codec} is not VP8 or H264`);
    app.settings.videoCodec = codec;
    await app.store.saveSettings({ videoCodec: codec });
  },
};

/** Hooks for the browser tests: re-publish what was sent, forge with a fresh key. */
const testHooks = {
  /** The envelopes published last (`{topic, payload}`), oldest first. */
  sent: () => app.signaling.sent.map((s) => ({ ...s })),
  /** Publish raw text on a topic (QoS 1), e.g. a copy of an envelope already sent. */
  publish: (topic, payload) => app.signaling.publishRaw(topic, payload),
  /** What the current call sends: `{videoCodec, framesSent, audioPackets}` from getStats. */
  outbound: async () => {
    const pc = needPhone().call?.pc;
    if (!pc) throw new Error("no call");
    const stats = await pc.getStats();
    const out = { videoCodec: null, framesSent: 0, audioPackets: 0 };
    stats.forEach((report) => {
      if (report.type !== "outbound-rtp") return;
      if (report.kind === "video") {
        out.framesSent += report.framesSent ?? 0;
        if (report.codecId && stats.get(report.codecId)) {
          out.videoCodec = stats.get(report.codecId).mimeType;
        }
      } else {
        out.audioPackets += report.packetsSent ?? 0;
      }
    });
    return out;
  },
  /** Stop sending media in the current call (as if the uplink died): the peer reoffers. */
  dropMedia: async () => {
    const pc = needPhone().call?.pc;
    if (!pc) throw new Error("no call");
    await Promise.all(pc.getSenders().map((sender) => sender.replaceTrack(null)));
  },
  /** Seal a message to `to` signed by a fresh identity in this phone's name, and publish it. */
  forge: async ({ to, type, callId, body = {} }) => {
    const forger = await Identity.generate();
    const payload = await seal({
      identity: forger,
      from: app.pairing.address,
      to,
      recipient: app.peers.pinned(to),
      type,
      callId,
      body,
    });
    app.signaling.publishRaw(app.signaling.topics.inbox(to), payload);
    return payload;
  },
};

const ready = app.start().catch((err) => {
  console.error("callbox:", err);
  app.connection = "error";
  app.ui.showError(err.message ?? String(err));
  throw err;
});
ready.catch(() => {}); // shown on the page; tests await it and see the rejection

window.callbox = {
  ready,
  snapshot: () => app.snapshot(),
  ...actions,
  test: testHooks,
};
