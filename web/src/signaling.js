// Signaling over the site broker: MQTT 5 over WebSockets (docs/protocol.md, "Topics,
// presence and profiles"), the peers the phone knows with their pinned keys, and the
// verified, decrypted messages of the phone's inbox.

import * as mqttModule from "mqtt";

import { parseJson } from "./protocol/canonical.js";
import { seal } from "./protocol/envelope.js";
import { Rejected } from "./protocol/errors.js";
import { PublicKeys, normalizeFingerprint, safetyNumber } from "./protocol/keys.js";
import { readProfile, signedProfile } from "./protocol/profile.js";
import { Receiver } from "./protocol/receiver.js";
import { ReplayGuard } from "./protocol/replay.js";

const mqtt = mqttModule.default?.connect ? mqttModule.default : mqttModule;

const PREFIX = "callbox/v1";
const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 10000;
const CONNECT_TIMEOUT_MS = 5000;
const KEEPALIVE_S = 10;
const SECURITY_REASONS = new Set(["bad_signature", "decrypt_failed", "key_changed"]);
/** Inbox and profile messages waiting to be verified: beyond this many a flood is dropped. */
export const MAX_PENDING = 256;

/** The topics of one site (docs/protocol.md, "Topics"). */
export class SiteTopics {
  /** @param {string} site */
  constructor(site) {
    this.site = site;
  }

  inbox(address) {
    return `${PREFIX}/${this.site}/${address}/inbox`;
  }

  presence(address) {
    return `${PREFIX}/${this.site}/${address}/presence`;
  }

  profile(address) {
    return `${PREFIX}/${this.site}/${address}/profile`;
  }

  /** The signed site directory (retained; only the broker's admin account writes it). */
  directory() {
    return `${PREFIX}/${this.site}/directory`;
  }

  /** `[address, kind]` of a topic of this site, or null. */
  parse(topic) {
    const parts = topic.split("/");
    if (parts.length !== 5 || `${parts[0]}/${parts[1]}` !== PREFIX || parts[2] !== this.site) {
      return null;
    }
    return [parts[3], parts[4]];
  }
}

/**
 * The peers of the site: presence, advertised profiles and the keys this phone pinned.
 *
 * A peer of the pairing is pinned when its retained profile advertises keys whose
 * fingerprint is the pairing's; a mismatch, or later keys other than the pinned ones, is a
 * key change, shown with the new safety number until a person confirms it. The peers an
 * accepted site directory gives the phone (`useDirectory`) are pinned with the directory's
 * keys; a peer of the link keeps its own pin. This object is also the `contacts` of the
 * protocol's Receiver.
 */
export class Peers {
  /**
   * @param {{pairing: object, pinned: Object<string, {sign: string, dh: string}>,
   *   ownKeys: PublicKeys, save: (pinned: object) => Promise<void>, onChange: () => void}} args
   */
  constructor({ pairing, pinned, ownKeys, save, onChange }) {
    this.ownKeys = ownKeys;
    this.save = save;
    this.onChange = onChange;
    /** @type {Map<string, any>} */
    this.entries = new Map();
    for (const peer of pairing.peers) {
      const stored = pinned[peer.address];
      this.entries.set(peer.address, {
        address: peer.address,
        name: peer.name,
        role: peer.role,
        paired: true,
        fromLink: true,
        fromDirectory: false,
        expected: normalizeFingerprint(peer.fingerprint),
        pinnedKeys: stored ? PublicKeys.fromJson(stored) : null,
        advertisedKeys: null,
        online: false,
        keyChanged: false,
        fingerprint: null,
        safetyNumber: null,
      });
    }
  }

  _entry(address) {
    let entry = this.entries.get(address);
    if (!entry) {
      entry = {
        address,
        name: address,
        role: "",
        paired: false,
        expected: null,
        pinnedKeys: null,
        advertisedKeys: null,
        online: false,
        keyChanged: false,
        fingerprint: null,
        safetyNumber: null,
      };
      this.entries.set(address, entry);
    }
    return entry;
  }

  /**
   * Trust what an accepted site directory gives this phone (`entries`: its flat's members and
   * the door stations, with their keys), alongside the peers of the pairing link: a peer of the
   * link keeps its own entry (the link's pin wins, as `[[contacts]]` win on units). Entries of
   * an earlier directory that are not in `entries` are forgotten (no longer trusted).
   * @returns {{added: string[], removed: string[]}} addresses newly followed and no longer
   */
  useDirectory(entries) {
    const listed = new Map();
    for (const e of entries) if (!this.entries.get(e.address)?.fromLink) listed.set(e.address, e);
    const removed = [];
    for (const [address, entry] of this.entries) {
      if (entry.fromDirectory && !listed.has(address)) {
        this.entries.delete(address);
        removed.push(address);
      }
    }
    const added = [];
    for (const e of listed.values()) {
      const old = this.entries.get(e.address);
      if (!old?.fromDirectory) added.push(e.address);
      this.entries.set(e.address, {
        address: e.address,
        name: e.name,
        role: e.role,
        paired: true,
        fromLink: false,
        fromDirectory: true,
        expected: null,
        pinnedKeys: e.keys,
        advertisedKeys: old?.advertisedKeys ?? null,
        online: old?.online ?? false,
        keyChanged: Boolean(old?.advertisedKeys && !old.advertisedKeys.equals(e.keys)),
        fingerprint: old?.fingerprint ?? null,
        safetyNumber: old?.safetyNumber ?? null,
      });
    }
    this.onChange();
    return { added, removed };
  }

  /** The addresses trusted through the site directory. */
  directoryAddresses() {
    return [...this.entries.values()].filter((e) => e.fromDirectory).map((e) => e.address);
  }

  /** The keys pinned for `address` (Receiver contacts interface). */
  pinned(address) {
    return this.entries.get(address)?.pinnedKeys ?? null;
  }

  /** The keys `address`'s retained profile advertises (Receiver contacts interface). */
  advertised(address) {
    return this.entries.get(address)?.advertisedKeys ?? null;
  }

  get(address) {
    return this.entries.get(address) ?? null;
  }

  /** True when `address` is pinned and its profile does not advertise other keys. */
  trusted(address) {
    const entry = this.entries.get(address);
    return Boolean(entry && entry.pinnedKeys && !entry.keyChanged);
  }

  /** The first paired door, or null. */
  firstDoor() {
    for (const entry of this.entries.values()) {
      if (entry.paired && entry.role === "door") return entry.address;
    }
    return null;
  }

  /** Forget every presence (a new broker connection brings the retained ones again). */
  forgetPresence() {
    for (const entry of this.entries.values()) entry.online = false;
    this.onChange();
  }

  setPresence(address, online) {
    this._entry(address).online = online;
    this.onChange();
  }

  /**
   * A retained profile arrived (its `keys` read, its signature checked: `signed`): learn its
   * name and keys, pin or flag a key change. Only a signed profile may say that a pinned
   * peer's key changed: anyone with the peer's broker login can publish an unsigned one.
   */
  async sawProfile(address, profile, keys, signed) {
    const entry = this._entry(address);
    if (entry.pinnedKeys && !entry.pinnedKeys.equals(keys) && !signed) {
      console.warn(`callbox: an unsigned profile of ${address} with other keys ignored`);
      return;
    }
    if (!entry.paired) {
      if (typeof profile.name === "string") entry.name = profile.name;
      if (typeof profile.role === "string") entry.role = profile.role;
    }
    entry.advertisedKeys = keys;
    entry.fingerprint = await keys.fingerprint();
    entry.safetyNumber = await safetyNumber(this.ownKeys, keys);
    if (entry.paired && !entry.pinnedKeys) {
      if (normalizeFingerprint(entry.fingerprint) === entry.expected) {
        entry.pinnedKeys = keys;
        await this._persist();
        console.info(`callbox: pinned ${address} (${entry.fingerprint})`);
      }
    }
    const changed = entry.paired && !(entry.pinnedKeys && entry.pinnedKeys.equals(keys));
    if (changed && !entry.keyChanged) {
      console.warn(
        `callbox: key change for ${address}: it now advertises ${entry.fingerprint}; ` +
          `refused until confirmed (safety number ${entry.safetyNumber})`,
      );
    }
    entry.keyChanged = changed;
    this.onChange();
  }

  /** A person compared the safety number: pin the keys `address` now advertises. */
  async confirm(address) {
    const entry = this.entries.get(address);
    if (!entry || !entry.advertisedKeys) throw new Error(`no keys advertised by ${address}`);
    entry.pinnedKeys = entry.advertisedKeys;
    entry.keyChanged = false;
    this.onChange();
    await this._persist();
  }

  async _persist() {
    const pinned = {};
    for (const entry of this.entries.values()) {
      // directory keys come from the directory again (kept with it in the store)
      if (entry.pinnedKeys && !entry.fromDirectory) {
        pinned[entry.address] = entry.pinnedKeys.toJson();
      }
    }
    await this.save(pinned);
  }

  /** Plain JSON for the page's snapshot. */
  snapshot() {
    const out = {};
    for (const entry of this.entries.values()) {
      out[entry.address] = {
        name: entry.name,
        role: entry.role,
        online: entry.online,
        pinned: Boolean(entry.pinnedKeys),
        fromDirectory: Boolean(entry.fromDirectory),
        keyChanged: entry.keyChanged,
        fingerprint: entry.fingerprint,
        safetyNumber: entry.safetyNumber,
      };
    }
    return out;
  }
}

/**
 * The phone's broker connection: announces the phone, tracks peers, opens its inbox.
 *
 * `onMessage(message)` gets every verified message ({type, callId, from, to, ts, body}) in
 * order; `onRejected(err)` every refused one (already counted and logged); `onState(state,
 * error)` the connection state ("connecting", "online", "offline", "error").
 */
export class Signaling {
  constructor({
    pairing,
    identity,
    peers,
    onMessage,
    onRejected,
    onState,
    onPresence,
    onDirectory,
  }) {
    this.pairing = pairing;
    this.address = pairing.address;
    this.identity = identity;
    this.peers = peers;
    this.topics = new SiteTopics(pairing.site);
    this.onMessage = onMessage;
    this.onRejected = onRejected;
    this.onState = onState;
    this.onPresence = onPresence;
    this.onDirectory = onDirectory; // the directory's payload, when the link has an admin key
    /** @type {Object<string, number>} */
    this.rejections = {};
    this.receiver = new Receiver({
      identity,
      address: this.address,
      contacts: peers,
      replay: new ReplayGuard(),
    });
    this.state = "connecting";
    this.error = null;
    this.client = null;
    this.connectedOnce = false;
    this.backoff = RECONNECT_MIN_MS;
    this.queue = Promise.resolve();
    this.sent = []; // the last envelopes published (test hooks re-publish them)
    this.profile = null; // signed once, at the first connection
    this.pending = 0; // inbox and profile messages queued for verification
    /** Messages dropped unread: retained inbox deliveries, a full queue. */
    this.dropped = { retained_ignored: 0, queue_full: 0 };
  }

  /** Connect; resolves once online for the first time, rejects when the broker refuses us. */
  connect() {
    return new Promise((resolve, reject) => {
      this._firstConnect = { resolve, reject };
      const client = mqtt.connect(this.pairing.broker, {
        protocolVersion: 5,
        clientId: this.address,
        username: this.pairing.username,
        password: this.pairing.password,
        clean: true,
        keepalive: KEEPALIVE_S,
        connectTimeout: CONNECT_TIMEOUT_MS,
        reconnectPeriod: RECONNECT_MIN_MS,
        resubscribe: false,
        reconnectOnConnackError: false,
        will: {
          topic: this.topics.presence(this.address),
          payload: JSON.stringify({ state: "offline" }),
          qos: 1,
          retain: true,
        },
      });
      this.client = client;
      client.on("connect", () => this._connected());
      client.on("message", (topic, payload, packet) => this._received(topic, payload, packet));
      client.on("error", (err) => this._failed(err));
      client.on("close", () => this._closed());
      client.on("reconnect", () => this._setState("connecting", this.error));
    });
  }

  _setState(state, error = null) {
    this.state = state;
    this.error = error;
    this.onState(state, error);
  }

  async _connected() {
    const client = this.client;
    this.backoff = RECONNECT_MIN_MS;
    client.options.reconnectPeriod = RECONNECT_MIN_MS;
    this.peers.forgetPresence();
    try {
      // only the peers of the pairing, one topic each: a phone in a building of 1,000 endpoints
      // is handed its own few peers' presence and profile, not the whole building's
      // (docs/protocol.md, "Following only what is needed")
      const followed = {};
      for (const peer of this.pairing.peers) {
        if (peer.address === this.address) continue;
        followed[this.topics.presence(peer.address)] = { qos: 1 };
        followed[this.topics.profile(peer.address)] = { qos: 1 };
      }
      // the site directory's peers: presence only (their keys are the directory's)
      for (const address of this.peers.directoryAddresses()) {
        followed[this.topics.presence(address)] = { qos: 1 };
      }
      if (this.pairing.admin_key && this.onDirectory) {
        followed[this.topics.directory()] = { qos: 1 };
      }
      const granted = await client.subscribeAsync({
        // no local: the empty retained message that clears a retained delivery stays away
        [this.topics.inbox(this.address)]: { qos: 1, nl: true },
        ...followed,
      });
      const refused = granted.filter((g) => g.qos >= 0x80).map((g) => g.topic);
      if (refused.length) {
        const message =
          `The broker refused ${this.address} the topics ${refused.join(", ")}: ` +
          `the pairing does not match the broker's accounts; pair this phone again.`;
        console.error("callbox:", message);
        this._setState("error", message);
        this._firstConnect?.reject(new Error(message));
        this._firstConnect = null;
        client.end(true);
        return;
      }
      this.profile ??= await signedProfile(this.identity, this.address, {
        name: this.pairing.name,
        role: "web",
      });
      await client.publishAsync(this.topics.profile(this.address), JSON.stringify(this.profile), {
        qos: 1,
        retain: true,
      });
      await client.publishAsync(
        this.topics.presence(this.address),
        JSON.stringify({ state: "online" }),
        { qos: 1, retain: true },
      );
    } catch (err) {
      console.warn("callbox: announcing on the broker failed", err);
      return; // the connection dropped meanwhile: "close" follows and we reconnect
    }
    this.connectedOnce = true;
    this._setState("online");
    console.info(`callbox: ${this.address} online at ${this.pairing.broker}`);
    this._firstConnect?.resolve();
    this._firstConnect = null;
  }

  _failed(err) {
    const code = err && err.code;
    if (code === 134 || code === 135 || code === 4 || code === 5) {
      const message =
        `The broker at ${this.pairing.broker} refused the login of ${this.pairing.username} ` +
        `(wrong password or not authorized): pair this phone again with a fresh link.`;
      console.error("callbox:", message, err);
      this._setState("error", message);
      this._firstConnect?.reject(new Error(message));
      this._firstConnect = null;
      this.client?.end(true);
      return;
    }
    console.warn("callbox: broker connection error", err);
  }

  _closed() {
    if (this.state === "error" || this.closing) return;
    let message = this.connectedOnce
      ? `Lost the connection to the broker at ${this.pairing.broker}; reconnecting…`
      : `Cannot reach the broker at ${this.pairing.broker}; retrying…`;
    if (!this.connectedOnce && this.pairing.ca && this.pairing.broker.startsWith("wss:")) {
      // a browser does not tell a page why a TLS connection failed: name the likely cause
      message +=
        ` If this phone does not trust the site certificate yet, install the site CA ` +
        `(SHA-256 ${this.pairing.ca}, under "This phone" below) and reload.`;
    }
    this._setState(this.connectedOnce ? "offline" : "connecting", message);
    this.peers.forgetPresence();
    // exponential back-off: mqtt.js reads reconnectPeriod each time it schedules a retry
    this.backoff = Math.min(this.backoff * 2, RECONNECT_MAX_MS);
    if (this.client) this.client.options.reconnectPeriod = this.backoff;
  }

  _received(topic, payload, packet) {
    if (topic === this.topics.directory()) {
      if (!this.onDirectory) return;
      const bytes = new Uint8Array(payload);
      this._enqueue(() => this.onDirectory(bytes));
      return;
    }
    const parsed = this.topics.parse(topic);
    if (!parsed) return;
    const [address, kind] = parsed;
    if (kind === "inbox") {
      if (address !== this.address || !payload.length) return;
      if (packet?.retain) {
        this._ignoreRetained(topic);
        return;
      }
      const bytes = new Uint8Array(payload);
      this._enqueue(() => this._inbox(bytes));
    } else if (kind === "presence") {
      // only peers the phone knows (a directory peer just removed may still have one queued)
      if (address === this.address || !this.peers.get(address)) return;
      let online = false;
      if (payload.length) {
        try {
          online = JSON.parse(new TextDecoder().decode(payload)).state === "online";
        } catch {
          console.warn(`callbox: bad presence from ${address} ignored`);
          return;
        }
      }
      this.peers.setPresence(address, online);
      this.onPresence?.(address, online);
    } else if (kind === "profile") {
      if (!payload.length || address === this.address) return;
      this._enqueue(async () => {
        try {
          const profile = parseJson(new TextDecoder("utf-8", { fatal: true }).decode(payload));
          const { keys, signed } = await readProfile(address, profile);
          await this.peers.sawProfile(address, profile, keys, signed);
        } catch (err) {
          console.warn(`callbox: bad profile from ${address} ignored: ${err.message}`);
        }
      });
    }
  }

  /**
   * Follow the presence of peers a new directory added, stop following those it removed
   * (`Peers.useDirectory`'s result). Without a connection the next one subscribes them all.
   */
  async followDirectory({ added, removed }) {
    const client = this.client;
    if (!client?.connected) return;
    const linked = new Set(this.pairing.peers.map((p) => p.address));
    const gone = removed.filter((a) => !linked.has(a)).map((a) => this.topics.presence(a));
    try {
      if (gone.length) await client.unsubscribeAsync(gone);
      if (added.length) {
        const topics = Object.fromEntries(added.map((a) => [this.topics.presence(a), { qos: 1 }]));
        await client.subscribeAsync(topics);
      }
    } catch (err) {
      console.warn("callbox: following the directory's peers failed (retried at reconnection)", err);
    }
  }

  /** Run `work` after what is queued; beyond {@link MAX_PENDING} waiting, drop it (a flood). */
  _enqueue(work) {
    if (this.pending >= MAX_PENDING) {
      if (this.dropped.queue_full++ % 100 === 0) {
        console.warn(
          `callbox: ${MAX_PENDING} messages wait for verification: dropping ` +
            `(${this.dropped.queue_full} so far)`,
        );
      }
      return;
    }
    this.pending += 1;
    this.queue = this.queue.then(work).finally(() => {
      this.pending -= 1;
    });
  }

  /**
   * A retained message on our inbox (someone published it with the retain flag, so the broker
   * would hand it to us again at every connection): never acted on, and cleared.
   */
  _ignoreRetained(topic) {
    this.dropped.retained_ignored += 1;
    console.warn(`callbox: a retained message on ${topic} ignored and cleared`);
    this.client
      ?.publishAsync(topic, "", { qos: 1, retain: true })
      .catch((err) => console.warn("callbox: clearing a retained inbox message failed", err));
  }

  async _inbox(bytes) {
    let message;
    try {
      message = await this.receiver.receive(bytes);
    } catch (err) {
      if (err instanceof Rejected) {
        this.reject(err);
        return;
      }
      console.error("callbox: receiving a message failed", err);
      return;
    }
    try {
      await this.onMessage(message);
    } catch (err) {
      console.error(`callbox: handling ${message.type} from ${message.from} failed`, err);
    }
  }

  /** Count and log a refused message; tell the call layer about a possible tampering. */
  reject(err) {
    this.rejections[err.reason] = (this.rejections[err.reason] || 0) + 1;
    console.warn(`callbox: dropped a message in the inbox: ${err.message}`);
    if (SECURITY_REASONS.has(err.reason) && err.claimed) this.onRejected?.(err);
    else this.onRejected?.(null);
  }

  /** Sign and encrypt a message for a pinned peer: `{topic, payload}` ready to publish. */
  async seal(to, type, callId, body) {
    const recipient = this.peers.pinned(to);
    if (!recipient) throw new Error(`cannot send ${type} to ${to}: its keys are not pinned`);
    const payload = await seal({
      identity: this.identity,
      from: this.address,
      to,
      recipient,
      type,
      callId,
      body,
    });
    return { topic: this.topics.inbox(to), payload };
  }

  /** Sign, encrypt and publish a message to a pinned peer (QoS 1, not retained). */
  async send(to, type, callId, body) {
    const sealed = await this.seal(to, type, callId, body);
    this.publishRaw(sealed.topic, sealed.payload);
  }

  /** Publish an already sealed envelope (QoS 1); also remembered for the test hooks. */
  publishRaw(topic, payload) {
    if (!this.client) throw new Error("not connected to the broker");
    this.sent.push({ topic, payload });
    if (this.sent.length > 20) this.sent.shift();
    this.client.publish(topic, payload, { qos: 1 }, (err) => {
      if (err) console.warn(`callbox: publish to ${topic} failed`, err);
    });
  }

  /** The page goes away: publish what is ready (sealed farewells) and say offline. */
  farewell(sealed = []) {
    if (!this.client || !this.client.connected) return;
    for (const { topic, payload } of sealed) this.client.publish(topic, payload, { qos: 1 });
    this.client.publish(this.topics.presence(this.address), JSON.stringify({ state: "offline" }), {
      qos: 1,
      retain: true,
    });
  }
}
