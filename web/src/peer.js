// RTCPeerConnection helpers of the phone's calls: no trickle (every candidate in the SDP),
// codec preference, the DTLS fingerprint rule of docs/protocol.md, user-facing media errors.

const ACCEPTED_FINGERPRINTS = new Set(["sha-256", "sha-384", "sha-512"]);
const GATHER_TIMEOUT_MS = 5000;

/** Refuse an SDP without a DTLS fingerprint or with one weaker than SHA-256. */
export function checkFingerprints(sdp) {
  const algorithms = [...String(sdp).matchAll(/^a=fingerprint:(\S+)\s/gm)].map((m) => m[1].toLowerCase());
  if (!algorithms.length) throw new SecurityFailure("the peer's SDP carries no DTLS fingerprint");
  const weak = algorithms.filter((a) => !ACCEPTED_FINGERPRINTS.has(a));
  if (weak.length) throw new SecurityFailure(`the peer's SDP uses a weak DTLS fingerprint: ${weak}`);
}

export class SecurityFailure extends Error {}

/** Resolve once ICE gathering is complete: the SDP then holds every candidate (no trickle). */
export function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === "complete") {
        pc.removeEventListener("icegatheringstatechange", done);
        clearTimeout(timer);
        resolve();
      }
    };
    const timer = setTimeout(() => {
      console.warn("callbox: ICE gathering did not complete in time; sending what we have");
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    }, GATHER_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", done);
  });
}

/** Order the video codecs: the preferred one (VP8 or H264) first, the others after. */
export function preferCodec(transceiver, codec) {
  const wanted = `video/${codec}`.toLowerCase();
  for (const caps of [RTCRtpReceiver.getCapabilities("video"), RTCRtpSender.getCapabilities("video")]) {
    if (!caps) continue;
    const codecs = caps.codecs;
    const first = codecs.filter((c) => c.mimeType.toLowerCase() === wanted);
    const rest = codecs.filter((c) => c.mimeType.toLowerCase() !== wanted);
    try {
      transceiver.setCodecPreferences([...first, ...rest]);
      return;
    } catch (err) {
      console.warn("callbox: setCodecPreferences failed", err);
    }
  }
}

export function kindOf(transceiver) {
  return transceiver.receiver.track?.kind ?? transceiver.mid ?? "";
}

/** The user-facing text of a getUserMedia failure. */
export function mediaError(err, what) {
  if (err && (err.name === "NotAllowedError" || err.name === "SecurityError")) {
    return `Access to the ${what} was denied: allow it in the browser's site settings.`;
  }
  if (err && err.name === "NotFoundError") return `No ${what} found on this device.`;
  if (err && err.name === "NotReadableError") return `The ${what} is in use by another app.`;
  return `The ${what} could not be opened: ${err?.message ?? err}`;
}

// The relay servers an invite carries (docs/protocol.md, "ice_servers"): only stun:, turn: and
// turns: URLs, at most 4 entries of at most 4 URLs, fields of at most 256 characters, TURN
// entries with a username and a credential whose "<expiry>:" has not passed.
const ICE_URL = /^(stun|turn|turns):[A-Za-z0-9.-]{1,253}(:\d{1,5})?(\?transport=(udp|tcp))?$/;
const MAX_ICE_SERVERS = 4;
const MAX_ICE_FIELD = 256;

/** `{servers, problems}`: an invite's usable `ice_servers` (RTCIceServer dicts), and why not the rest. */
export function inviteIceServers(raw, nowS) {
  if (raw === undefined || raw === null) return { servers: [], problems: [] };
  if (!Array.isArray(raw)) return { servers: [], problems: ["ice_servers is not a list"] };
  const servers = [];
  const problems = [];
  if (raw.length > MAX_ICE_SERVERS) {
    problems.push(`ice_servers has ${raw.length} entries: only the first ${MAX_ICE_SERVERS} used`);
  }
  raw.slice(0, MAX_ICE_SERVERS).forEach((entry, index) => {
    const problem = iceServerProblem(entry, nowS);
    if (problem) problems.push(`ice_servers[${index}]: ${problem}`);
    else servers.push({ urls: [...entry.urls], username: entry.username, credential: entry.credential });
  });
  return { servers, problems };
}

function iceServerProblem(entry, nowS) {
  if (!entry || typeof entry !== "object" || !Array.isArray(entry.urls)) {
    return "not an object with a list of urls";
  }
  if (!entry.urls.length || entry.urls.length > 4) return "urls must be a list of 1 to 4 URLs";
  const bad = entry.urls.find((u) => typeof u !== "string" || u.length > MAX_ICE_FIELD || !ICE_URL.test(u));
  if (bad !== undefined) {
    return `URL ${JSON.stringify(String(bad).slice(0, 80))} is not a stun:, turn: or turns: URL`;
  }
  for (const field of ["username", "credential"]) {
    const value = entry[field];
    if (value !== undefined && (typeof value !== "string" || value.length > MAX_ICE_FIELD)) {
      return `${field} must be text of at most ${MAX_ICE_FIELD} characters`;
    }
  }
  if (entry.urls.some((u) => !u.startsWith("stun:"))) {
    if (!entry.username || !entry.credential) {
      return `${entry.urls[0]}: a TURN server needs a username and credential`;
    }
    const expiry = Number(/^(\d+):/.exec(entry.username)?.[1]);
    if (Number.isFinite(expiry) && expiry <= nowS) {
      return `${entry.urls[0]}: the TURN credentials expired ${Math.round(nowS - expiry)} s ago`;
    }
  }
  return "";
}

/** The text of an `icecandidateerror`: which server, and "credentials refused" for a 401. */
export function iceErrorText(event) {
  const refused = event.errorCode === 401 || event.errorCode === 441;
  const why = refused ? "credentials refused" : `error ${event.errorCode}`;
  return `TURN/STUN server ${event.url}: ${why} (${event.errorText})`;
}
