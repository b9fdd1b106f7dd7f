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
  return text;
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
