// The phone page's service worker (served as /sw.js, scope: the page's root).
//
// - The shell (index.html, the bundle, style.css, the manifest, the icons) is cached at
//   install under a name carrying the build's version, served from the cache first so the
//   page opens at once and offline, and the caches of older versions are deleted on activate.
// - A Web Push from a door (docs/protocol.md, "Web Push") shows a notification: the door's
//   name (and the label of the entrance panel's bell that rang: "Front door · Flat 12 - Smith";
//   a malformed label is left out, the ring still shows), "Someone is at the door" with the time, the snapshot, Answer and Decline; once the
//   ring timeout has passed, "Missed visitor" without actions. A door pushes each ring twice:
//   at once, then again with the visitor's picture. A push of a call whose notification still
//   shows replaces it without alerting again (and keeps a picture it had); one of a call whose
//   notification this worker already showed and that is gone (clicked, dismissed) shows nothing:
//   a late picture never brings a ring back. Pushes are handled one at a time, in order.
// - A click on it focuses an open page, or opens one at ./?ring=<call id>&action=answer|decline;
//   the page connects, waits for the door's signed invite of that call, shows the preview and
//   then answers or declines (web/src/ring_request.js). The push carries nothing that answers
//   or opens the door by itself.
//
// SHELL_VERSION and SHELL_FILES are defined by the build (web/build.mjs).

/* global SHELL_VERSION, SHELL_FILES */

import { pushBell, pushTitle } from "./bell.js";

const CACHE_PREFIX = "callbox-shell-";
const CACHE = `${CACHE_PREFIX}${SHELL_VERSION}`;
const CALL_ID = /^[A-Za-z0-9_-]{1,64}$/;
const SNAPSHOT = /^data:image\/(jpeg|png|webp);base64,[A-Za-z0-9+/=]+$/;
const ACTIONS = new Set(["answer", "decline"]);

const scope = () => new URL(self.registration.scope);
/** What this worker did with each push since it started (the last 20), for the tests. */
const outcomes = [];
/** The calls this worker showed a notification for, or left to a focused page (the last 50). */
const handledCalls = [];

function handled(callId) {
  if (!handledCalls.includes(callId)) handledCalls.push(callId);
  if (handledCalls.length > 50) handledCalls.shift();
}

function outcome(callId, what) {
  outcomes.push(`${callId}: ${what}`);
  if (outcomes.length > 20) outcomes.shift();
}

/** The URLs of the shell, absolute. */
function shellUrls() {
  return SHELL_FILES.map((file) => new URL(file, scope()).href);
}

// the shell -----------------------------------------------------------------------------------

async function install() {
  const cache = await caches.open(CACHE);
  // around the HTTP cache: the files of this version, not a copy the browser kept
  await cache.addAll(shellUrls().map((url) => new Request(url, { cache: "reload" })));
  await self.skipWaiting();
}

async function activate() {
  for (const name of await caches.keys()) {
    if (name.startsWith(CACHE_PREFIX) && name !== CACHE) {
      await caches.delete(name);
      console.info(`callbox sw: deleted the old shell cache ${name}`);
    }
  }
  await self.clients.claim();
  console.info(`callbox sw: shell ${SHELL_VERSION} active`);
}

/** The cached answer for a shell request (a page navigation is the cached index.html). */
async function fromShell(request) {
  const cache = await caches.open(CACHE);
  const url = new URL(request.url);
  const key = request.mode === "navigate" ? new URL("./", scope()).href : url.origin + url.pathname;
  const cached = await cache.match(key);
  return cached ?? fetch(request);
}

function isShellRequest(request) {
  if (request.method !== "GET") return false;
  const url = new URL(request.url);
  if (url.origin !== scope().origin) return false;
  if (request.mode === "navigate") return isPagePath(url.pathname);
  return shellUrls().includes(url.origin + url.pathname);
}

/** True for the phone page's own paths: the scope's root and its index.html. */
function isPagePath(pathname) {
  const root = scope().pathname;
  return pathname === root || pathname === `${root}index.html`;
}

// push ----------------------------------------------------------------------------------------

/**
 * The ring payload of docs/protocol.md ("Web Push") checked field by field, or null.
 * @returns {{door: string, name: string, callId: string, atMs: number, ringTimeoutMs: number,
 *   bell: string|null, snapshot: string|null}|null}
 */
function readPayload(payload) {
  if (!payload || typeof payload !== "object" || payload.v !== 1 || payload.type !== "ring") return null;
  const { door, name, call_id: callId, at_ms: atMs, ring_timeout_ms: ringTimeoutMs } = payload;
  if (typeof door !== "string" || !door || typeof name !== "string") return null;
  if (typeof callId !== "string" || !CALL_ID.test(callId)) return null;
  if (!Number.isSafeInteger(atMs) || !Number.isSafeInteger(ringTimeoutMs) || ringTimeoutMs <= 0) return null;
  const snapshot = typeof payload.snapshot === "string" && SNAPSHOT.test(payload.snapshot) ? payload.snapshot : null;
  const bell = pushBell(payload.bell, (why) => console.warn(`callbox sw: ring ${callId}: ${why}: left out`));
  return { door, name: name || door, callId, atMs, ringTimeoutMs, bell, snapshot };
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/**
 * The notification for a ring at `now`: `{title, options}`; "Missed visitor" once it is over.
 * `replacing`: a notification of this call shows already: it is replaced without alerting again.
 */
function ringNotification(ring, now, replacing = false) {
  const icon = new URL("icons/icon-192.png", scope()).href;
  const data = { door: ring.door, callId: ring.callId, atMs: ring.atMs, ringTimeoutMs: ring.ringTimeoutMs };
  if (now > ring.atMs + ring.ringTimeoutMs) {
    return {
      title: pushTitle(ring.name, ring.bell),
      options: {
        body: `Missed visitor at ${clock(ring.atMs)}`,
        tag: ring.callId,
        icon,
        data: { ...data, missed: true },
        ...(ring.snapshot ? { image: ring.snapshot } : {}),
      },
    };
  }
  return {
    title: pushTitle(ring.name, ring.bell),
    options: {
      body: `Someone is at the door (${clock(ring.atMs)})`,
      tag: ring.callId,
      renotify: !replacing,
      requireInteraction: true,
      icon,
      data: { ...data, missed: false },
      actions: [
        { action: "answer", title: "Answer" },
        { action: "decline", title: "Decline" },
      ],
      ...(ring.snapshot ? { image: ring.snapshot } : {}),
    },
  };
}

/** The open phone pages (windows on the page's own paths), most recently focused first. */
async function pages() {
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  return windows.filter((client) => isPagePath(new URL(client.url).pathname));
}

/**
 * A push arrived: show its notification. Skipped only while a phone page is visible and
 * focused (it rings by itself once the door's invite arrives): Chromium then asks for no
 * notification (a visible tab of the origin satisfies userVisibleOnly), and every other push
 * shows one, as userVisibleOnly promises.
 */
async function onPush(text, now = Date.now()) {
  let ring = null;
  try {
    ring = readPayload(JSON.parse(text ?? ""));
  } catch {
    ring = null;
  }
  if (!ring) {
    console.warn("callbox sw: a push that is not a callbox ring:", String(text).slice(0, 200));
    await self.registration.showNotification("callbox", {
      body: "A message from the door could not be read: open the page.",
      icon: new URL("icons/icon-192.png", scope()).href,
      data: { missed: true },
    });
    outcome("-", "shown: unreadable");
    return null;
  }
  const [current] = await self.registration.getNotifications({ tag: ring.callId });
  if (!current && handledCalls.includes(ring.callId)) {
    // clicked, dismissed or left to the page: the second push (the picture) brings nothing back
    console.info(`callbox sw: ring ${ring.callId}: its notification is gone, nothing to update`);
    outcome(ring.callId, "dropped: no longer shown");
    return null;
  }
  // a picture shown already stays (the pushes may arrive out of order); "Missed visitor" stays
  const kept = current && SNAPSHOT.test(current.image) ? current.image : null;
  const shown = { ...ring, snapshot: ring.snapshot ?? kept };
  const over = current?.data?.missed === true ? Math.max(now, ring.atMs + ring.ringTimeoutMs + 1) : now;
  const { title, options } = ringNotification(shown, over, Boolean(current));
  if (!options.data.missed && !current) {
    const focused = (await pages()).find((c) => c.focused && c.visibilityState === "visible");
    if (focused) {
      focused.postMessage({ type: "callbox-push", callId: ring.callId, door: ring.door });
      console.info(`callbox sw: ring ${ring.callId}: the page is open and focused, it rings itself`);
      handled(ring.callId);
      outcome(ring.callId, "skipped: a focused page");
      return null;
    }
  }
  handled(ring.callId);
  outcome(ring.callId, "showing");
  await self.registration.showNotification(title, options);
  const what = current ? "replaced" : "shown";
  outcome(ring.callId, options.data.missed ? `${what}: missed` : what);
  return { title, options };
}

// clicks --------------------------------------------------------------------------------------

/** Where a click leads: the page, into the ringing call when the ring is not over. */
function clickUrl(data, action) {
  const url = new URL("./", scope());
  if (data && !data.missed && typeof data.callId === "string" && CALL_ID.test(data.callId)) {
    url.searchParams.set("ring", data.callId);
    if (ACTIONS.has(action)) url.searchParams.set("action", action);
  }
  return url.href;
}

/**
 * A click on a notification (its body, Answer or Decline): an open phone page is told which
 * call and action and focused; without one, a page opens at {@link clickUrl}.
 */
async function onNotificationClick(notification, action) {
  const data = notification.data ?? {};
  notification.close();
  const url = clickUrl(data, action);
  const [page] = await pages();
  if (page) {
    if (url.includes("?")) {
      page.postMessage({ type: "callbox-ring", callId: data.callId, action: ACTIONS.has(action) ? action : "" });
    }
    try {
      return await page.focus();
    } catch (err) {
      console.warn(`callbox sw: could not focus the page: ${err.message}`);
      return page;
    }
  }
  return self.clients.openWindow(url);
}

// wiring --------------------------------------------------------------------------------------

self.addEventListener("install", (event) => event.waitUntil(install()));
self.addEventListener("activate", (event) => event.waitUntil(activate()));
self.addEventListener("fetch", (event) => {
  if (isShellRequest(event.request)) event.respondWith(fromShell(event.request));
});
// One push at a time: the second push of a call must see the first one's notification.
let pushes = Promise.resolve();
self.addEventListener("push", (event) => {
  const text = event.data?.text() ?? null;
  const done = pushes
    .then(() => onPush(text))
    .catch((err) => {
      outcome("-", `failed: ${err}`);
      console.error("callbox sw: a push could not be shown", err);
    });
  pushes = done;
  event.waitUntil(done);
});
self.addEventListener("notificationclose", (event) => outcome(event.notification.tag, "closed"));
// The push service replaced the subscription (Firefox tells; Chromium does not): subscribe
// again with the same key. The worker has no broker connection to sign with: the page sends the
// new subscription to the doors the next time it opens (it registers at every opening).
self.addEventListener("pushsubscriptionchange", (event) => {
  const options = event.oldSubscription?.options;
  if (!options?.applicationServerKey) return;
  event.waitUntil(
    self.registration.pushManager
      .subscribe({ userVisibleOnly: true, applicationServerKey: options.applicationServerKey })
      .catch((err) => console.warn("callbox sw: could not subscribe again", err)),
  );
});
self.addEventListener("notificationclick", (event) => {
  event.waitUntil(onNotificationClick(event.notification, event.action));
});

/** The handlers by name, for the browser tests (they run in this worker, not copies). */
self.callboxWorker = {
  version: SHELL_VERSION,
  outcomes: () => [...outcomes],
  onPush,
  onNotificationClick,
  clickUrl,
  readPayload,
  ringNotification,
};
