// The site directory as the phone follows it: verified with the admin key of the pairing link,
// the highest version accepted kept in the page's store (a rollback is refused after a reload
// too), and its peers handed to Peers (trusted) and to Signaling (their presence followed).

import { DirectoryRefused, adminKeyBytes, peersOf, readDirectory } from "./protocol/directory.js";

/** What the phone accepted from the site directory, and what it refused. */
export class SiteDirectory {
  /**
   * @param {{pairing: object, store: import("./store.js").Store,
   *   peers: import("./signaling.js").Peers, follow: (change: object) => Promise<void>}} args
   */
  constructor({ pairing, store, peers, follow }) {
    this.site = pairing.site;
    this.address = pairing.address;
    this.adminKey = pairing.admin_key ? adminKeyBytes(pairing.admin_key) : null;
    this.store = store;
    this.peers = peers;
    this.follow = follow;
    this.version = 0; // the highest accepted (the floor)
    this.document = ""; // its text, to recognise the same one again at a reconnection
    /** @type {Object<string, number>} refused directories by problem */
    this.refused = {};
  }

  /** Restore the last accepted directory (verified again) and its version floor. */
  async load() {
    if (!this.adminKey) return;
    const saved = await this.store.directory();
    if (!saved) return;
    this.version = saved.version;
    try {
      const directory = await readDirectory(new TextEncoder().encode(saved.document), {
        site: this.site,
        adminKey: this.adminKey,
      });
      this.document = saved.document;
      this.peers.useDirectory(peersOf(directory, this.address));
      console.info(`callbox: site directory version ${directory.version} restored`);
    } catch (err) {
      // another admin key was pinned since (a new pairing): the floor stays
      console.warn(`callbox: the saved site directory is not used: ${err.message}`);
    }
  }

  /** A directory message from the broker: accept it (trust its peers) or refuse it (logged). */
  async receive(payload) {
    if (!this.adminKey) return;
    if (!payload.length) {
      console.warn("callbox: site directory cleared on the broker: the accepted one is kept");
      return;
    }
    const text = new TextDecoder().decode(payload);
    let directory;
    try {
      directory = await readDirectory(payload, { site: this.site, adminKey: this.adminKey });
      if (directory.version <= this.version) {
        if (text === this.document) return; // the same again (a reconnection)
        throw new DirectoryRefused(
          "rollback",
          `version ${directory.version} is not above the accepted ${this.version} ` +
            "(an old or replayed directory)",
        );
      }
    } catch (err) {
      const problem = err instanceof DirectoryRefused ? err.problem : "malformed";
      this.refused[problem] = (this.refused[problem] || 0) + 1;
      console.warn(`callbox: ${err.message}`);
      return;
    }
    this.version = directory.version;
    this.document = text;
    await this.store.saveDirectory({ version: directory.version, document: text });
    const change = this.peers.useDirectory(peersOf(directory, this.address));
    console.info(
      `callbox: site directory version ${directory.version} accepted: ` +
        `${directory.entries.length} entries, +${change.added.length} -${change.removed.length} peers`,
    );
    await this.follow(change);
  }

  /** Plain JSON for the page's snapshot. */
  snapshot() {
    return {
      pinned: Boolean(this.adminKey),
      version: this.version,
      refused: { ...this.refused },
      peers: this.peers.directoryAddresses(),
    };
  }
}
