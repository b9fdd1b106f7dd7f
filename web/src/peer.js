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
