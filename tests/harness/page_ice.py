"""The phone page's ICE, seen from inside Chromium: its RTCPeerConnections and getStats.

The relay tests (tests/browser/test_turn_relay*_browser.py) ask which candidate pair the page
nominated and with what configuration: :data:`RECORD_PEER_CONNECTIONS` (an init script) keeps
every RTCPeerConnection the page makes with its config; :func:`selected_pair` reads the last.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.async_api import Page

RECORD_PEER_CONNECTIONS = """
(() => {
  const Native = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = function (config) {
    const pc = new Native(config);
    window.__pcs.push({ pc, config });
    return pc;
  };
  window.RTCPeerConnection.prototype = Native.prototype;
})();
"""
"""Test-only: keep every RTCPeerConnection the page makes, to read its config and getStats."""

SELECTED_PAIR = """
async () => {
  const { pc, config } = window.__pcs[window.__pcs.length - 1];
  const stats = await pc.getStats();
  let pair = null;
  stats.forEach((r) => {
    if (r.type === "transport" && r.selectedCandidatePairId) {
      pair = stats.get(r.selectedCandidatePairId);
    }
  });
  const inbound = {};
  stats.forEach((r) => { if (r.type === "inbound-rtp") inbound[r.kind] = r.packetsReceived; });
  return {
    policy: config.iceTransportPolicy,
    servers: (config.iceServers || []).map((s) => ({ urls: s.urls, username: s.username })),
    nominated: pair ? pair.nominated : null,
    local: pair ? stats.get(pair.localCandidateId).candidateType : null,
    remote: pair ? stats.get(pair.remoteCandidateId).candidateType : null,
    inbound,
  };
}
"""


async def selected_pair(page: Page) -> dict[str, Any]:
    """The last RTCPeerConnection's policy, ICE servers, selected pair and packets received.

    Keys: ``policy``, ``servers`` (urls and username of each), ``nominated``, ``local`` and
    ``remote`` (candidate types), ``inbound`` (packets received by kind). Needs
    :data:`RECORD_PEER_CONNECTIONS` added before the page loaded.
    """
    seen: dict[str, Any] = await page.evaluate(SELECTED_PAIR)
    return seen
