// The phone's persistent state in IndexedDB: identity, pairing, pinned peers, call log,
// settings. The identity's private keys are non-extractable CryptoKeys, stored as they are
// (IndexedDB structured-clones a CryptoKey without ever exposing its bytes).

const DB_NAME = "callbox";
const DB_VERSION = 1;
const KV = "kv";
const LOG_LIMIT = 100;

/** Default settings: no STUN/TURN servers (a site on one LAN), VP8 first. */
export const DEFAULT_SETTINGS = Object.freeze({ iceServers: [], videoCodec: "VP8" });

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/** The phone's key-value store. Every method is async; values are structured clones. */
export class Store {
  /** @param {IDBDatabase} db */
  constructor(db) {
    this.db = db;
  }

  /** Open (and create on first use) the phone's database. */
  static async open() {
    const req = indexedDB.open(DB_NAME, DB_VERSION);
    req.onupgradeneeded = () => {
      if (!req.result.objectStoreNames.contains(KV)) req.result.createObjectStore(KV);
    };
    return new Store(await request(req));
  }

  /** The value stored under `key`, or `fallback`. */
  async get(key, fallback = null) {
    const tx = this.db.transaction(KV, "readonly");
    const value = await request(tx.objectStore(KV).get(key));
    return value === undefined ? fallback : value;
  }

  /** Store `value` under `key` (durably, before resolving). */
  async put(key, value) {
    const tx = this.db.transaction(KV, "readwrite");
    tx.objectStore(KV).put(value, key);
    await new Promise((resolve, reject) => {
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  }

  /** `{signKey, dhKey, publicKeys}` (CryptoKeys and the public keys JSON) or null. */
  identity() {
    return this.get("identity");
  }

  saveIdentity(record) {
    return this.put("identity", record);
  }

  /** The pairing payload (see the contract) or null. */
  pairing() {
    return this.get("pairing");
  }

  savePairing(pairing) {
    return this.put("pairing", pairing);
  }

  /** `{address: {sign, dh}}`: the keys pinned per peer. */
  pinned() {
    return this.get("pinned", {});
  }

  savePinned(pinned) {
    return this.put("pinned", pinned);
  }

  /** `{version, document}`: the site directory accepted last (its text), or null. */
  directory() {
    return this.get("directory");
  }

  saveDirectory(record) {
    return this.put("directory", record);
  }

  /** Settings merged over the defaults. */
  async settings() {
    return { ...DEFAULT_SETTINGS, ...(await this.get("settings", {})) };
  }

  async saveSettings(changes) {
    await this.put("settings", { ...(await this.settings()), ...changes });
  }

  /** The call log, newest first. */
  log() {
    return this.get("log", []);
  }

  /** Add an entry at the head of the call log (keeps the last LOG_LIMIT). */
  async addLog(entry) {
    const log = [entry, ...(await this.log())].slice(0, LOG_LIMIT);
    await this.put("log", log);
    return log;
  }
}
