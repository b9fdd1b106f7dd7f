// Web Push on the phone (docs/protocol.md, "Web Push"): with the resident's consent (a tap:
// permission prompts need a user gesture) the page subscribes at the browser's push service
// with the site's VAPID public key from the pairing link, and registers the subscription with
// each door of its pairing in a signed, encrypted `push_subscribe`; the door answers
// `push_status`. Turning it off sends `push_unsubscribe` and drops the subscription.

import * as b64u from "./protocol/b64u.js";
import { newCallId } from "./protocol/envelope.js";

/** The site's VAPID public key: an uncompressed P-256 point, 65 bytes, base64url. */
export function pushKeyBytes(text) {
  const bytes = b64u.decode(text);
  if (bytes.length !== 65 || bytes[0] !== 4) throw new Error("not an uncompressed P-256 public key");
  return bytes;
}

/** True on an iPhone or iPad whose page is not opened from the Home Screen (no push there). */
export function iosNeedsHomeScreen(nav = navigator, win = window) {
  const ios = /iPad|iPhone|iPod/.test(nav.userAgent) || (nav.platform === "MacIntel" && nav.maxTouchPoints > 1);
  const standalone = nav.standalone === true || win.matchMedia?.("(display-mode: standalone)").matches;
  return ios && !standalone;
}

/** The `push_subscribe` body for a PushSubscription: its JSON with `expires_ms`. */
export function subscribeBody(subscription) {
  const json = subscription.toJSON();
  const expires = json.expirationTime ?? subscription.expirationTime ?? null;
  return {
    subscription: { endpoint: json.endpoint, keys: { p256dh: json.keys.p256dh, auth: json.keys.auth } },
    expires_ms: Number.isFinite(expires) ? Math.round(expires) : null,
  };
}

function sameKey(subscription, key) {
  const current = subscription.options?.applicationServerKey;
  if (!current) return true; // a browser that does not tell: keep it
  return b64u.encode(new Uint8Array(current)) === b64u.encode(key);
}

/**
 * The phone's push registration with its doors.
 *
 * `state` is "unsupported", "no-key" (the pairing link carries no site push key), "off",
 * "blocked" (notifications denied in the browser's settings), "on", or "error".
 */
export class PushRegistration {
  constructor({ pairing, signaling, peers, store, onChange }) {
    this.pairing = pairing;
    this.signaling = signaling;
    this.peers = peers;
    this.store = store;
    this.onChange = onChange;
    this.registration = null;
    this.subscription = null;
    this.wanted = false;
    this.error = null;
    this.supported = "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
    this.homeScreenFirst = iosNeedsHomeScreen();
    /** @type {Map<string, {sent: string|null, subscribed: boolean|null, error: string}>} */
    this.doors = new Map();
    for (const peer of pairing.peers) {
      if (peer.role === "door") this.doors.set(peer.address, { sent: null, subscribed: null, error: "" });
    }
  }

  get key() {
    return this.pairing.push_key || "";
  }

  get state() {
    if (!this.supported) return "unsupported";
    if (!this.key) return "no-key";
    if (Notification.permission === "denied") return "blocked";
    if (this.error) return "error";
    return this.wanted && this.subscription ? "on" : "off";
  }

  /** Find the worker's registration and any subscription made before. */
  async start(registration) {
    this.wanted = Boolean((await this.store.get("push", {})).wanted);
    if (!this.supported || !registration) return;
    this.registration = registration;
    this.subscription = await registration.pushManager.getSubscription();
    if (this.subscription && this.key && !sameKey(this.subscription, pushKeyBytes(this.key))) {
      console.info("callbox: the site's push key changed: subscribing again");
      await this.subscription.unsubscribe();
      this.subscription = null;
      if (this.wanted && Notification.permission === "granted") await this._subscribe();
    }
    this.onChange();
    this.sync();
  }

  /** The resident turns notifications on (from a tap: the permission prompt needs one). */
  async enable() {
    if (!this.supported) throw new Error("This browser cannot receive notifications from the door.");
    if (this.homeScreenFirst) {
      throw new Error("On iPhone and iPad, add this page to the Home Screen first and open it from there.");
    }
    if (!this.key) throw new Error("This phone's pairing link has no push key: pair it again with a new link.");
    const permission = await Notification.requestPermission();
    if (permission !== "granted") {
      this.onChange();
      throw new Error("Notifications are not allowed for this page: allow them in the browser's site settings.");
    }
    this.error = null;
    if (!this.registration) this.registration = await navigator.serviceWorker.ready;
    await this._subscribe();
    await this._setWanted(true);
    for (const door of this.doors.values()) door.sent = null; // register (again) with every door
    this.sync();
  }

  async _subscribe() {
    try {
      this.subscription =
        (await this.registration.pushManager.getSubscription()) ??
        (await this.registration.pushManager.subscribe({
          userVisibleOnly: true,
          applicationServerKey: pushKeyBytes(this.key),
        }));
    } catch (err) {
      this.error = `The browser's push service refused a subscription: ${err.message}`;
      this.onChange();
      throw new Error(this.error);
    }
  }

  /** The resident turns notifications off: every door forgets this phone, then the browser. */
  async disable() {
    await this._setWanted(false);
    for (const [address, door] of this.doors) {
      if (this.peers.trusted(address)) {
        await this._send(address, door, "push_unsubscribe", {});
      } else {
        door.sent = null;
      }
    }
    try {
      await this.subscription?.unsubscribe();
    } catch (err) {
      console.warn("callbox: unsubscribing from the push service failed", err);
    }
    this.subscription = null;
    this.error = null;
    this.onChange();
  }

  async _setWanted(wanted) {
    this.wanted = wanted;
    await this.store.put("push", { wanted });
  }

  /**
   * Register the subscription with each door that has not had it on this page load, once the
   * door is online and its keys are pinned (an inbox keeps nothing for an offline door).
   */
  sync() {
    // the door stations of the site directory, trusted since the link was made
    for (const address of this.peers.directoryAddresses?.() ?? []) {
      if (!this.doors.has(address) && this.peers.get(address)?.role === "door") {
        this.doors.set(address, { sent: null, subscribed: null, error: "" });
      }
    }
    if (!this.wanted || !this.subscription || this.signaling.state !== "online") return;
    for (const [address, door] of this.doors) {
      const entry = this.peers.get(address);
      if (door.sent === "push_subscribe" || !entry?.online || !this.peers.trusted(address)) continue;
      this._send(address, door, "push_subscribe", subscribeBody(this.subscription));
    }
  }

  async _send(address, door, type, body) {
    door.sent = type;
    door.subscribed = null;
    door.error = "";
    this.onChange();
    try {
      await this.signaling.send(address, type, newCallId(), body);
      console.info(`callbox: ${type} sent to ${address}`);
    } catch (err) {
      door.sent = null;
      door.error = `not sent: ${err.message}`;
      console.warn(`callbox: could not send ${type} to ${address}: ${err.message}`);
      this.onChange();
    }
  }

  /** A door's verified `push_status`: `{subscribed, error}`. */
  onStatus(message) {
    const door = this.doors.get(message.from);
    if (!door) {
      console.info(`callbox: push_status from ${message.from}, which is not a door of the pairing, ignored`);
      return;
    }
    const body = message.body;
    door.subscribed = body.subscribed === true;
    door.error = typeof body.error === "string" ? body.error.slice(0, 300) : "";
    if (door.error) console.warn(`callbox: ${message.from} refused the push registration: ${door.error}`);
    this.onChange();
  }

  /** Plain JSON for the page's snapshot. */
  snapshot() {
    const doors = {};
    for (const [address, door] of this.doors) doors[address] = { ...door };
    return {
      state: this.state,
      homeScreenFirst: this.homeScreenFirst,
      endpoint: this.subscription?.endpoint ?? null,
      error: this.error,
      doors,
    };
  }
}
