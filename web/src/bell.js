// Which bell of an entrance panel rang: the invite's optional `bell` and the ring push's
// optional `bell` label (docs/protocol.md), checked before the page or its service worker
// shows any of it, and the words shown for it.

/** The longest bell name or label the page shows; a longer one is ignored. */
export const MAX_BELL_TEXT = 64;

/** The `cancel` reason of a door whose door opened while the call rang (any path). */
export const DOOR_OPENED = "door-opened";

const VIA = new Set(["button", "code"]);

function shortText(value) {
  return typeof value === "string" && value.length <= MAX_BELL_TEXT;
}

/**
 * The invite's `bell` as `{name, label, via}`, or null when there is none or it is malformed
 * (then `problem` is called with why: the call still rings, without the bell).
 */
export function inviteBell(value, problem = () => {}) {
  if (value === undefined || value === null) return null;
  if (typeof value !== "object" || Array.isArray(value)) {
    problem("bell is not an object");
    return null;
  }
  const { name, label = "", via = "button" } = value;
  if (!shortText(name) || !name) {
    problem(`bell name is not a string of 1 to ${MAX_BELL_TEXT} characters`);
    return null;
  }
  if (!shortText(label)) {
    problem(`bell label is not a string of at most ${MAX_BELL_TEXT} characters`);
    return null;
  }
  if (!VIA.has(via)) {
    problem('bell via is not "button" or "code"');
    return null;
  }
  return { name, label, via };
}

/** The name of a door's default bell (`[inputs.doorbell]`), labelled with the door's name. */
export const DEFAULT_BELL = "doorbell";

/**
 * The bell for people: its label (else its name), "(dialled)" for a dialled code; "" for
 * none and for the door's default bell, whose label is the door's own name (as the indoor
 * unit shows it).
 */
export function bellWords(bell) {
  if (!bell || bell.name === DEFAULT_BELL) return "";
  const words = bell.label || bell.name;
  return bell.via === "code" ? `${words} (dialled)` : words;
}

const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

/**
 * The ring push's `bell` (the label of the bell that rang) as a string, or null when there
 * is none or it is malformed (then `problem` is called with why: the ring still shows,
 * without it).
 */
export function pushBell(value, problem = () => {}) {
  if (value === undefined || value === null) return null;
  if (typeof value !== "string" || !value || value.length > MAX_BELL_TEXT || CONTROL.test(value)) {
    problem(`bell is not a string of 1 to ${MAX_BELL_TEXT} printable characters`);
    return null;
  }
  return value;
}

/** A push notification's title: the door's name, and the bell's label when there is one. */
export function pushTitle(doorName, bell) {
  return bell ? `${doorName} · ${bell}` : doorName;
}
