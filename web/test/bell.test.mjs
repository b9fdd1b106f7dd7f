// Unit tests of web/src/bell.js with node's own runner (tests/device/test_web_bell.py runs
// them): the invite's `bell` and the ring push's `bell` label are shown only when well formed.

import assert from "node:assert/strict";
import { test } from "node:test";
import { MAX_BELL_TEXT, bellWords, inviteBell, pushBell, pushTitle } from "../src/bell.js";

test("ok: a well-formed bell is kept", () => {
  const bell = { name: "flat12", label: "Flat 12 - Smith", via: "code" };
  assert.deepEqual(inviteBell(bell), bell);
  assert.deepEqual(inviteBell({ name: "flat12" }), { name: "flat12", label: "", via: "button" });
  assert.equal(inviteBell(undefined), null, "no bell: nothing to say");
});

test("fail: a malformed bell is ignored, and said why", () => {
  const long = "x".repeat(MAX_BELL_TEXT + 1);
  const cases = [
    "flat12",
    ["flat12"],
    { name: "" },
    { name: 12 },
    { name: long },
    { name: "flat12", label: long },
    { name: "flat12", label: { text: "x" } },
    { name: "flat12", via: "keypad" },
  ];
  for (const value of cases) {
    const problems = [];
    assert.equal(inviteBell(value, (p) => problems.push(p)), null, JSON.stringify(value));
    assert.equal(problems.length, 1, JSON.stringify(value));
  }
  assert.deepEqual(inviteBell({ name: "x".repeat(MAX_BELL_TEXT) }).name.length, MAX_BELL_TEXT);
});

test("ok: the words shown for a bell", () => {
  assert.equal(bellWords(null), "");
  assert.equal(bellWords({ name: "flat12", label: "Flat 12 - Smith", via: "button" }), "Flat 12 - Smith");
  assert.equal(bellWords({ name: "flat12", label: "Flat 12", via: "code" }), "Flat 12 (dialled)");
  assert.equal(bellWords({ name: "flat12", label: "", via: "button" }), "flat12");
  assert.equal(bellWords({ name: "doorbell", label: "Front door", via: "button" }), "");
});

test("ok and fail: the ring push's bell label, and the notification's title", () => {
  assert.equal(pushBell("Flat 12 - Smith"), "Flat 12 - Smith");
  assert.equal(pushBell("x".repeat(MAX_BELL_TEXT)).length, MAX_BELL_TEXT);
  assert.equal(pushBell(undefined), null, "no bell: nothing to say");
  for (const value of ["", 12, ["Flat 12"], { label: "Flat 12" }, "x".repeat(MAX_BELL_TEXT + 1), "Flat\n12", "\u001b[31m"]) {
    const problems = [];
    assert.equal(pushBell(value, (p) => problems.push(p)), null, JSON.stringify(value));
    assert.equal(problems.length, 1, JSON.stringify(value));
  }
  assert.equal(pushTitle("Front door", "Flat 12 - Smith"), "Front door · Flat 12 - Smith");
  assert.equal(pushTitle("Front door", null), "Front door");
});
