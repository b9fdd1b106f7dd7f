// callbox simulator page: polls /api/state, shows both units, sends presses and touches.
// Plain ES module, no build step; served by device/simulator/_http.py.

const POLL_MS = 100; // LEDs and the relay: a 300 ms pulse is seen at least twice
const SCREEN_MIN_MS = 100; // at most ~10 screen pictures per second per unit
const CALL_LABELS = {
  INCOMING: "ringing: incoming call",
  INPROGRESS: "calling",
  RINGING: "ringing",
  ANSWER: "in call",
  CONNECTED: "in call",
  UPDATE: "in call",
  MUTE: "in call",
  UNMUTE: "in call",
  RECONNECTING: "reconnecting",
};

const DEMO_CARD = "wiegand26:12:34567"; // the demo resident's (device/simulator/_simulator.py)
const ALARM_LABELS = {
  door_left_open: "door left open",
  door_forced_open: "door forced open",
  tamper: "tamper: the housing is open",
};

const $ = (id) => document.getElementById(id);
const screens = {}; // unit -> {frames, loading, lastAt, url, loads}
let lastState = null;

function showError(message) {
  const box = $("sim-error");
  box.textContent = message;
  box.hidden = !message;
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) {
    let reason = `${response.status} ${response.statusText}`;
    try {
      reason = (await response.json()).error || reason;
    } catch (err) {
      // not JSON: keep the status line
    }
    throw new Error(reason);
  }
}

function formatDuration(seconds) {
  const s = Math.floor(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function callText(call) {
  if (!call) return "idle";
  const label = CALL_LABELS[call.status] || call.status.toLowerCase();
  const direction = call.incoming ? "from" : "to";
  let text = `${label} ${direction} ${call.peer}`;
  if (call.answered) text += ` · ${formatDuration(call.duration_s)}`;
  if (call.answered && call.muted) text += " · muted";
  if (call.answered) text += ` · ${call.audio_device}`;
  if (!call.video) text += " · audio only";
  if (call.bell) text += ` · bell ${call.bell.label}`;
  return text;
}

function fillList(list, items, empty) {
  // items: [{text, className}]; rebuilt only when the text changes (no flicker at 10 Hz)
  const key = JSON.stringify(items);
  if (list.dataset.key === key) return;
  list.dataset.key = key;
  list.replaceChildren();
  for (const item of items.length ? items : [{ text: empty, className: "none" }]) {
    const li = document.createElement("li");
    li.textContent = item.text;
    if (item.className) li.className = item.className;
    list.append(li);
  }
}

function alarmItems(alarms) {
  return alarms.map((alarm) => {
    const since = new Date(alarm.since * 1000).toLocaleTimeString();
    const where = alarm.door ? ` at ${alarm.door}` : "";
    return { text: `${ALARM_LABELS[alarm.kind] || alarm.kind}${where} since ${since}`, className: alarm.kind };
  });
}

function renderBell(unit, call) {
  const element = $(`${unit}-bell`);
  if (!element) return;
  const bell = call && call.bell;
  element.dataset.bell = bell ? bell.name : "";
  element.textContent = bell ? `${bell.label} (${bell.via === "code" ? "dial code" : "button"})` : unit === "door" ? "no bell" : "–";
}

function renderCards(unit, readers) {
  const box = $(`${unit}-cards`);
  if (!box || box.dataset.readers === readers.join(",")) return;
  box.dataset.readers = readers.join(",");
  box.replaceChildren();
  for (const reader of readers) {
    const form = document.createElement("form");
    form.className = "card";
    const label = document.createElement("label");
    label.htmlFor = `${unit}-card-${reader}`;
    label.textContent = `card at “${reader}”`;
    const input = document.createElement("input");
    input.id = `${unit}-card-${reader}`;
    input.value = DEMO_CARD;
    input.placeholder = "format:number, e.g. wiegand26:12:34567";
    input.spellcheck = false;
    input.autocomplete = "off";
    const button = document.createElement("button");
    button.type = "submit";
    button.id = `${unit}-present-${reader}`;
    button.textContent = "Present card";
    form.append(label, input, button);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      act(button, "/api/card", { unit, reader, card: input.value.trim() });
    });
    box.append(form);
  }
}

function renderSwitch(unit, name, value, on, off) {
  const button = $(`${unit}-${name}`);
  if (!button) return;
  button.hidden = value === null || value === undefined;
  if (button.hidden || button.disabled) return;
  button.setAttribute("aria-pressed", String(value));
  button.textContent = value ? on : off;
}

function renderPanel(unit, state) {
  const box = $(`${unit}-panel`);
  if (!box) return;
  const panel = state.panel;
  box.hidden = !panel;
  if (!panel) return;
  const entry = $(`${unit}-entry`);
  entry.dataset.entry = panel.entry;
  entry.textContent = panel.entry || "–";
  const keys = box.querySelector(".keypad");
  keys.hidden = !panel.keypad;
  $(`${unit}-bells`).textContent =
    panel.bells.map((bell) => (bell.code ? `${bell.code}# ${bell.label}` : `${bell.label} (button)`)).join(" · ") || "–";
  renderBell(unit, state.call);
  renderCards(unit, panel.card_readers);
  renderSwitch(unit, "door-contact", panel.door_open, "Door: open", "Door: closed");
  renderSwitch(unit, "tamper", panel.tampered, "Housing: open", "Housing: shut");
  const access = panel.access;
  const attempts = access && access.last_attempts ? access.last_attempts : [];
  fillList(
    $(`${unit}-attempts`),
    attempts
      .slice()
      .reverse()
      .map((a) => ({
        text: `${new Date(a.at).toLocaleTimeString()} ${a.kind} at ${a.via}: ${a.granted ? "granted" : "refused"}` +
          `${a.who ? ` (${a.who})` : ""}${a.reason ? ` · ${a.reason}` : ""}`,
        className: a.granted ? "granted" : "refused",
      })),
    access && access.enabled ? "none yet" : "[access] is off",
  );
  const locked = access && (access.keypad_locked_until || access.cards_locked_until);
  $(`${unit}-locked`).textContent = access && access.keypad_locked_until ? `· keypad locked until ${access.keypad_locked_until}` : locked ? `· cards locked until ${access.cards_locked_until}` : "";
}

function renderLed(unit, leds) {
  const led = leds.status;
  const element = $(`${unit}-led`);
  if (!element) return;
  const lit = Boolean(led && led.lit);
  const pattern = led ? led.pattern : "none";
  element.dataset.lit = String(lit);
  element.dataset.pattern = pattern;
  element.setAttribute("aria-label", `status LED ${lit ? "on" : "off"} (${pattern})`);
  $(`${unit}-led-pattern`).textContent = pattern.replace("_", " ");
}

const relays = {}; // unit -> pulses counted at the last poll

function renderRelay(unit, relay) {
  const element = $(`${unit}-relay`);
  if (!element || !relay) return;
  // A pulse that began and ended between two polls is still shown, for one poll.
  const seen = relays[unit];
  const missed = seen !== undefined && relay.pulses > seen && !relay.active;
  const on = relay.active || (missed && element.dataset.active !== "true");
  relays[unit] = relay.pulses;
  element.dataset.active = String(on);
  element.textContent = on ? "relay ON" : "relay off";
  $(`${unit}-relay-pulses`).textContent = String(relay.pulses);
  $(`${unit}-relay-pulse-ms`).textContent = String(relay.pulse_ms);
}

function renderMeters(unit, audio) {
  const meters = {
    speaker: audio.speaker,
    handset: audio.handset,
    mic: Object.entries(audio).find(([name]) => name.startsWith("microphone"))?.[1],
  };
  for (const [name, level] of Object.entries(meters)) {
    const meter = $(`${unit}-${name}-level`);
    if (!meter) continue;
    const value = level ? level.level : 0;
    meter.value = value;
    meter.dataset.active = String(Boolean(level && level.active));
    meter.title = `RMS ${(value * 100).toFixed(1)} % of full scale`;
  }
}

function renderToggles(unit, inputs) {
  const hook = $(`${unit}-hook`);
  if (hook && !hook.disabled) {
    hook.setAttribute("aria-pressed", String(inputs.off_hook));
    hook.textContent = inputs.off_hook ? "Handset: lifted" : "Handset: on the hook";
  }
  const proximity = $(`${unit}-proximity`);
  if (proximity && !proximity.disabled) {
    proximity.setAttribute("aria-pressed", String(inputs.near));
    proximity.textContent = inputs.near ? "Proximity: near" : "Proximity: far";
  }
}

async function loadScreen(unit, frames) {
  const screen = screens[unit];
  screen.loading = true;
  screen.lastAt = performance.now();
  try {
    const response = await fetch(`/api/${unit}/screen.jpg?frame=${frames}`);
    if (!response.ok) return;
    const url = URL.createObjectURL(await response.blob());
    const img = $(`${unit}-screen`);
    await new Promise((resolve) => {
      img.onload = resolve;
      img.onerror = resolve;
      img.src = url;
    });
    if (screen.url) URL.revokeObjectURL(screen.url);
    screen.url = url;
    screen.frames = frames;
    screen.loads += 1;
    img.dataset.frames = String(frames);
    img.dataset.loads = String(screen.loads);
    img.hidden = false;
    $(`${unit}-no-display`).hidden = true;
  } catch (err) {
    console.warn(`screen of ${unit}: ${err}`);
  } finally {
    screen.loading = false;
  }
}

function renderScreen(unit, state) {
  const screen = (screens[unit] ||= { frames: -1, loading: false, lastAt: 0, url: null, loads: 0 });
  const box = $(`${unit}-screen-box`);
  const img = $(`${unit}-screen`);
  if (!box || !img) return;
  const info = state.screen;
  box.classList.toggle("dark", info.blank || !state.backlight_on);
  if (info.kind === "none") {
    img.hidden = true;
    $(`${unit}-no-display`).hidden = false;
    screen.frames = -1;
  } else if (
    info.frames !== screen.frames &&
    !screen.loading &&
    performance.now() - screen.lastAt >= SCREEN_MIN_MS
  ) {
    loadScreen(unit, info.frames);
  }
  img.dataset.kind = info.kind;
  const caption = $(`${unit}-screen-caption`);
  if (caption) caption.textContent = info.kind === "camera" ? "camera (in a call)" : "camera idle";
  const name = $(`${unit}-screen-name`);
  if (name) {
    name.textContent = state.ui ? state.ui.screen : "–";
    name.dataset.screen = state.ui ? state.ui.screen : "";
    $(`${unit}-ui-status`).textContent = state.ui && state.ui.status_text ? `· ${state.ui.status_text}` : "";
  }
  const backlight = $(`${unit}-backlight`);
  if (backlight) {
    backlight.dataset.on = String(state.backlight_on);
    backlight.textContent = state.backlight_on ? "backlight on" : "backlight off";
  }
}

function renderPhone(phone) {
  const line = $("sim-phone");
  line.hidden = !phone;
  if (!phone) return;
  const link = $("sim-phone-link");
  if (link.href !== phone.url) link.href = phone.url;
  const status = $("sim-phone-status");
  status.dataset.paired = String(phone.paired);
  status.textContent = phone.paired
    ? "paired: the doorbell rings it with the indoor unit"
    : "not opened yet (its keys are trusted once the page has made them)";
}

function render(state) {
  renderPhone(state.phone);
  for (const [unit, unitState] of Object.entries(state.units)) {
    const status = $(`${unit}-status`);
    if (!status) continue;
    status.textContent = callText(unitState.call);
    status.dataset.call = unitState.call ? unitState.call.status : "idle";
    status.dataset.answered = String(Boolean(unitState.call && unitState.call.answered));
    renderScreen(unit, unitState);
    renderLed(unit, unitState.leds);
    renderRelay(unit, unitState.relay);
    renderMeters(unit, unitState.audio);
    renderToggles(unit, unitState.inputs);
    renderPanel(unit, unitState);
    if (!unitState.panel) renderBell(unit, unitState.call);
    const alarms = $(`${unit}-alarms`);
    if (alarms) fillList(alarms, alarmItems(unitState.alarms || []), unit === "door" ? "none" : "no alarm");
    const missed = $(`${unit}-missed`);
    if (missed) missed.textContent = String(unitState.missed_calls);
  }
}

function setConnected(connected, text) {
  const element = $("sim-connection");
  element.dataset.connected = String(connected);
  element.textContent = text;
}

async function poll() {
  try {
    const response = await fetch("/api/state");
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    lastState = await response.json();
    render(lastState);
    setConnected(true, "connected");
  } catch (err) {
    setConnected(false, "not connected: is the simulator still running?");
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

async function act(button, path, body) {
  button.disabled = true;
  button.classList.add("pressing");
  try {
    await post(path, body);
    showError("");
  } catch (err) {
    showError(`${button.textContent.trim()}: ${err.message}`);
  } finally {
    button.disabled = false;
    button.classList.remove("pressing");
  }
}

function wireControls() {
  for (const button of document.querySelectorAll("button[data-button]")) {
    button.addEventListener("click", () =>
      act(button, "/api/press", { unit: button.dataset.unit, button: button.dataset.button }),
    );
  }
  for (const toggle of document.querySelectorAll("button[data-input]")) {
    toggle.addEventListener("click", () => {
      const active = toggle.getAttribute("aria-pressed") !== "true";
      toggle.setAttribute("aria-pressed", String(active));
      act(toggle, "/api/set", {
        unit: toggle.dataset.unit,
        input: toggle.dataset.input,
        active,
      });
    });
  }
  for (const key of document.querySelectorAll("button[data-key]")) {
    key.addEventListener("click", () =>
      act(key, "/api/keypad", { unit: key.dataset.unit, keys: key.dataset.key }),
    );
  }
  const flatScreen = $("flat-screen");
  flatScreen.addEventListener("click", (event) => {
    if (!flatScreen.naturalWidth) return;
    const rect = flatScreen.getBoundingClientRect();
    // object-fit: contain keeps the aspect ratio: find the picture inside the box
    const scale = Math.min(rect.width / flatScreen.naturalWidth, rect.height / flatScreen.naturalHeight);
    const left = (rect.width - flatScreen.naturalWidth * scale) / 2;
    const top = (rect.height - flatScreen.naturalHeight * scale) / 2;
    const x = Math.floor((event.clientX - rect.left - left) / scale);
    const y = Math.floor((event.clientY - rect.top - top) / scale);
    if (x < 0 || y < 0 || x >= flatScreen.naturalWidth || y >= flatScreen.naturalHeight) return;
    post("/api/touch", { unit: "flat", x, y }).then(
      () => showError(""),
      (err) => showError(`touch: ${err.message}`),
    );
  });
}

window.simulator = { state: () => lastState };
wireControls();
poll();
