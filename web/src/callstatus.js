// Call statuses with mesibo's CALLSTATUS_* values (services/callapi/status.py) and the
// reasons of docs/protocol.md that map onto them.

export const STATUS = Object.freeze({
  NONE: 0x00,
  INCOMING: 0x01,
  INPROGRESS: 0x02,
  RINGING: 0x03,
  ANSWER: 0x05,
  CONNECTED: 0x30,
  RECONNECTING: 0x32,
  COMPLETE: 0x40,
  CANCEL: 0x41,
  NOANSWER: 0x42,
  BUSY: 0x43,
  UNREACHABLE: 0x44,
  OFFLINE: 0x45,
  NOTALLOWED: 0x4a,
  BLOCKED: 0x4b,
  DURATIONEXCEEDED: 0x4c,
  ERROR: 0x60,
  HWERROR: 0x61,
  NETWORKERROR: 0x62,
  SECURITYERROR: 0x64,
});

export const FAILURE_STATUS = { security: "SECURITYERROR", network: "NETWORKERROR", error: "ERROR" };
export const FAILURE_REASON = { SECURITYERROR: "security", NETWORKERROR: "network", ERROR: "error" };
export const DECLINE_STATUS = {
  busy: "BUSY",
  declined: "BUSY",
  notallowed: "NOTALLOWED",
  blocked: "BLOCKED",
  timeout: "NOANSWER",
  novideo: "NOTALLOWED",
  error: "ERROR",
  security: "SECURITYERROR",
  network: "NETWORKERROR",
};
