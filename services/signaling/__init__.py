"""Signaling: MQTT transport, signed and encrypted envelopes, presence, contacts, pinned keys.

The normative wire format is docs/protocol.md.
"""
