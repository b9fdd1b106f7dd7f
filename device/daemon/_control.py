"""The local control channel between the ``callbox`` CLI and the running daemon.

Newline-delimited JSON over an AF_UNIX stream socket (``/run/callbox/control.sock``, mode 0660,
so root and members of the callbox group may use it): the client sends one request line
``{"command": "status", "args": {...}}`` and gets one response line, ``{"ok": true, "result":
{...}}`` or ``{"ok": false, "error": "..."}``. ``callbox status``, ``callbox call`` and the reload
after ``callbox config set`` use it.

A bad request gets an error response naming what was wrong and is logged; the server keeps
serving. A request line is at most `MAX_REQUEST_BYTES` long and nested at most
`MAX_REQUEST_DEPTH` deep (checked before it is decoded: a 60,000-deep line would exhaust
Python's recursion limit in the JSON decoder); `parse_request` is the whole check. Every
request is documented in docs/operations.md, "The control socket".

A handler may raise `ControlError` for an expected refusal (answered and logged in one
line); any other exception is logged with its traceback and answered with its message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn

from hal.errors import CallboxError

__all__ = [
    "DEFAULT_CONTROL_SOCKET",
    "MAX_REQUEST_BYTES",
    "MAX_REQUEST_DEPTH",
    "BadRequestError",
    "ControlError",
    "ControlRequest",
    "ControlServer",
    "DaemonNotRunningError",
    "Handler",
    "parse_request",
    "request",
    "request_sync",
]

_log = logging.getLogger(__name__)

DEFAULT_CONTROL_SOCKET: Final = Path("/run/callbox/control.sock")
"""Where the daemon listens (systemd's RuntimeDirectory=callbox)."""

MAX_REQUEST_BYTES: Final = 64 * 1024
"""Longest accepted request line, newline excluded."""

MAX_REQUEST_DEPTH: Final = 8
"""Deepest nesting of arrays and objects in a request; the request object itself is level 1.

Every request the CLI sends is two levels deep (the request and its flat ``args``)."""

MAX_RESPONSE_BYTES: Final = 1024 * 1024
"""Longest response line a client accepts (and the server sends), newline excluded."""

SOCKET_MODE: Final = 0o660

_PROBE_TIMEOUT: Final = 2.0
_REQUEST_FIELDS: Final = frozenset({"command", "args"})

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
"""Runs one command: gets the request's ``args`` object, returns the ``result`` object."""


def default_control_path() -> Path:
    """Where the daemon listens: $CALLBOX_CONTROL, else systemd's runtime directory."""
    explicit = os.environ.get("CALLBOX_CONTROL")
    if explicit:
        return Path(explicit)
    runtime = os.environ.get("RUNTIME_DIRECTORY", "/run/callbox").split(":")[0]
    return Path(runtime) / "control.sock"


class ControlError(CallboxError):
    """A control request failed; the message says why in words for the person at the CLI."""


class DaemonNotRunningError(ControlError):
    """Nothing answers on the control socket: the daemon is not running."""


class BadRequestError(ControlError):
    """A request line the daemon does not accept; the message says why (it is the answer)."""


@dataclass(frozen=True)
class ControlRequest:
    """One parsed request: the command name and its ``args`` object."""

    command: str
    args: dict[str, Any]


class ControlServer:
    """The daemon's end of the control channel: one `Handler` per command name."""

    def __init__(self, path: Path, handlers: Mapping[str, Handler]) -> None:
        """Serve `handlers` on the socket at `path` once `start` is called."""
        self._path = Path(path)
        self._handlers = dict(handlers)
        self._server: asyncio.AbstractServer | None = None
        self._socket_id: tuple[int, int] | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._lock = asyncio.Lock()

    @property
    def path(self) -> Path:
        """The socket path."""
        return self._path

    async def start(self) -> None:
        """Listen on the socket (mode 0660).

        A stale socket left by a dead daemon is removed. Raises ControlError when another
        daemon answers on the socket, when something that is not a socket is in the way, or
        when the socket cannot be created.
        """
        async with self._lock:
            if self._server is not None:
                raise ControlError(f"{self._path}: control server already started")
            await _remove_stale_socket(self._path)
            try:
                server = await asyncio.start_unix_server(
                    self._serve, path=str(self._path), limit=MAX_REQUEST_BYTES
                )
            except OSError as err:
                raise ControlError(f"{self._path}: cannot listen: {err.strerror or err}") from err
            try:
                # Between bind and chmod the mode follows the umask; RuntimeDirectoryMode=0750
                # keeps others out of the directory meanwhile.
                info = await asyncio.to_thread(_chmod_and_stat, self._path)
            except OSError as err:
                server.close()
                raise ControlError(f"{self._path}: cannot set mode: {err.strerror or err}") from err
            self._server, self._socket_id = server, (info.st_dev, info.st_ino)
            _log.info("control: listening on %s", self._path)

    async def close(self) -> None:
        """Stop serving, end open connections and remove the socket file; idempotent."""
        async with self._lock:
            server, self._server = self._server, None
            if server is None:
                return
            server.close()
            current = asyncio.current_task()
            tasks = [task for task in self._connections if task is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await server.wait_closed()
            await asyncio.to_thread(self._remove_own_socket)

    def _remove_own_socket(self) -> None:
        """Unlink the socket file unless another daemon has replaced it since `start`."""
        try:
            info = os.stat(self._path)
            if (info.st_dev, info.st_ino) == self._socket_id:
                os.unlink(self._path)
        except FileNotFoundError:
            pass
        except OSError as err:
            _log.warning("control: cannot remove %s: %s", self._path, err)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer the requests of one connection, one line each, until the client closes."""
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        peer = _peer_name(writer)
        try:
            while await self._serve_one(reader, writer, peer):
                pass
        except ConnectionError as err:
            _log.debug("control: %s went away: %s", peer, err)
        except Exception:  # noqa: BLE001 - a bug here ends one connection, never the daemon
            _log.exception("control: the connection of %s failed", peer)
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve_one(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> bool:
        """Read and answer one request; False when the connection must end."""
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as err:
            if err.partial:
                await _send(writer, _refuse(peer, "incomplete request: no newline at the end"))
            return False
        except asyncio.LimitOverrunError:
            # The rest of the line is still unread: the stream cannot be resynchronised.
            await _send(
                writer, _refuse(peer, f"request line longer than {MAX_REQUEST_BYTES} bytes")
            )
            return False
        await _send(writer, await self._answer(line, peer))
        return True

    async def _answer(self, line: bytes, peer: str) -> bytes:
        """The encoded response to one request line."""
        try:
            parsed = parse_request(line)
        except BadRequestError as err:
            return _refuse(peer, str(err))
        command, args = parsed.command, parsed.args
        handler = self._handlers.get(command)
        if handler is None:
            known = ", ".join(sorted(self._handlers)) or "none"
            return _refuse(peer, f"unknown command {command!r} (known: {known})")
        try:
            result = await handler(args)
        except ControlError as err:
            _log.warning("control: %s from %s refused: %s", command, peer, err)
            return _encode({"ok": False, "error": str(err)})
        except Exception as err:  # noqa: BLE001 - a failing command must not stop the server
            _log.exception("control: %s from %s failed", command, peer)
            return _encode({"ok": False, "error": str(err) or type(err).__name__})
        if not isinstance(result, dict):
            _log.error("control: handler of %s returned %s, not a dict", command, type(result))
            return _encode({"ok": False, "error": "internal error (bad result)"})
        try:
            return _encode({"ok": True, "result": result})
        except (TypeError, ValueError) as err:
            _log.exception("control: result of %s cannot be sent", command)
            return _encode({"ok": False, "error": f"internal error ({err})"})


def parse_request(line: bytes) -> ControlRequest:
    """The request in one line (newline included or not); BadRequestError naming the problem.

    Refused: more than MAX_REQUEST_BYTES, nesting deeper than MAX_REQUEST_DEPTH, not UTF-8
    JSON (NaN and Infinity included), not an object, a field other than ``command`` and
    ``args``, no non-empty ``command`` string, ``args`` that is not an object (or null).
    """
    line = line.removesuffix(b"\n")
    if len(line) > MAX_REQUEST_BYTES:
        raise BadRequestError(f"request line longer than {MAX_REQUEST_BYTES} bytes")
    if not line.strip():
        raise BadRequestError("empty request line")
    depth = _nesting_depth(line)
    if depth > MAX_REQUEST_DEPTH:
        raise BadRequestError(f"request nested deeper than {MAX_REQUEST_DEPTH} levels")
    try:
        request = json.loads(line, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as err:
        raise BadRequestError(f"request is not JSON: {err}") from err
    if not isinstance(request, dict):
        raise BadRequestError(f"request must be a JSON object, not {type(request).__name__}")
    unknown = sorted(set(request) - _REQUEST_FIELDS)
    if unknown:
        raise BadRequestError(f"unknown request field(s): {', '.join(map(repr, unknown))}")
    command = request.get("command")
    if not isinstance(command, str) or not command:
        raise BadRequestError("request needs a 'command' string")
    args = request.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise BadRequestError(f"'args' must be a JSON object, not {type(args).__name__}")
    return ControlRequest(command, args)


def _nesting_depth(line: bytes) -> int:
    """How deep arrays and objects nest in a JSON text, brackets in strings not counted.

    One pass without recursion; it stops counting past MAX_REQUEST_DEPTH. Unbalanced brackets
    are left to the decoder to refuse.
    """
    depth = deepest = 0
    in_string = escaped = False
    for byte in line:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_REQUEST_DEPTH:
                    break
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def _no_constant(name: str) -> NoReturn:
    """The decoder's parse_constant hook: NaN, Infinity and -Infinity are not JSON."""
    raise ValueError(f"{name} is not JSON")


def _refuse(peer: str, reason: str) -> bytes:
    """Log a refused request and encode the error response."""
    _log.warning("control: refused a request from %s: %s", peer, reason)
    return _encode({"ok": False, "error": reason})


def _encode(response: dict[str, Any]) -> bytes:
    """One response line; an oversize result becomes an error response."""
    data = json.dumps(response, allow_nan=False, separators=(",", ":")).encode("utf-8")
    if len(data) > MAX_RESPONSE_BYTES:
        _log.error("control: response of %d bytes is too long", len(data))
        data = json.dumps({"ok": False, "error": "response too long"}).encode("utf-8")
    return data + b"\n"


async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Write one line and wait until it is handed to the kernel."""
    writer.write(data)
    await writer.drain()


def _peer_name(writer: asyncio.StreamWriter) -> str:
    """The client's process as "pid P (uid U)" (SO_PEERCRED), for the log."""
    sock = writer.get_extra_info("socket")
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (AttributeError, OSError):
        return "a client"
    pid, uid, _gid = struct.unpack("3i", creds)
    return f"pid {pid} (uid {uid})"


def _chmod_and_stat(path: Path) -> os.stat_result:
    """Set the socket's mode and read it back (blocking: run it in a thread)."""
    os.chmod(path, SOCKET_MODE)
    return os.stat(path)


async def _remove_stale_socket(path: Path) -> None:
    """Remove a socket nobody listens on; refuse a live one or a file that is not a socket."""
    try:
        info = await asyncio.to_thread(os.lstat, path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise ControlError(f"{path} exists and is not a socket; refusing to replace it")
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(str(path)), _PROBE_TIMEOUT
        )
    except (ConnectionRefusedError, FileNotFoundError):
        _log.info("control: removing the stale socket %s", path)
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(os.unlink, path)
        return
    except TimeoutError as err:
        raise ControlError(f"{path}: a process listens but does not accept connections") from err
    except OSError as err:
        raise ControlError(f"{path}: cannot check the socket: {err.strerror or err}") from err
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    raise ControlError(f"another callbox daemon is already running (it answers on {path})")


async def request(
    path: Path, command: str, args: dict[str, Any] | None = None, timeout: float = 5.0
) -> dict[str, Any]:
    """Send one command to the daemon listening on `path` and return its result.

    Raises DaemonNotRunningError when there is no socket or nobody listens on it, and
    ControlError when the daemon does not answer within `timeout` seconds, answers something
    unreadable, or refuses the request: then the message is the daemon's error, prefixed with
    ``"<command>: "`` unless it already starts so.
    """
    try:
        return await asyncio.wait_for(_exchange(Path(path), command, args or {}), timeout)
    except TimeoutError as err:
        raise ControlError(
            f"the callbox daemon did not answer {command!r} within {timeout:g} s ({path})"
        ) from err


def request_sync(
    path: Path, command: str, args: dict[str, Any] | None = None, timeout: float = 5.0
) -> dict[str, Any]:
    """`request` for synchronous callers (the click CLI); not from inside an event loop."""
    return asyncio.run(request(path, command, args, timeout))


async def _exchange(path: Path, command: str, args: dict[str, Any]) -> dict[str, Any]:
    """Connect, send the request line, read the response line, decode it."""
    try:
        line = json.dumps({"command": command, "args": args}).encode("utf-8") + b"\n"
    except (TypeError, ValueError) as err:
        raise ControlError(f"{command}: arguments are not JSON: {err}") from err
    if len(line) > MAX_REQUEST_BYTES:
        raise ControlError(f"{command}: request longer than {MAX_REQUEST_BYTES} bytes")
    reader, writer = await _connect(path)
    try:
        await _send(writer, line)
        raw = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as err:
        raise ControlError("the callbox daemon closed the connection without answering") from err
    except asyncio.LimitOverrunError as err:
        raise ControlError(
            f"the daemon's answer is longer than {MAX_RESPONSE_BYTES} bytes"
        ) from err
    except ConnectionError as err:
        raise ControlError(f"connection to the callbox daemon lost: {err}") from err
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return _decode_response(command, raw)


async def _connect(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open the connection, translating the OS errors into what they mean for a person."""
    try:
        return await asyncio.open_unix_connection(str(path), limit=MAX_RESPONSE_BYTES)
    except FileNotFoundError as err:
        raise DaemonNotRunningError(
            f"the callbox daemon is not running (no control socket at {path})"
        ) from err
    except ConnectionRefusedError as err:
        raise DaemonNotRunningError(
            f"the callbox daemon is not running (nothing listens on {path})"
        ) from err
    except PermissionError as err:
        raise ControlError(
            f"permission denied on {path}: run as root or as a member of the callbox group"
        ) from err
    except OSError as err:
        raise ControlError(f"cannot connect to the callbox daemon at {path}: {err}") from err


def _decode_response(command: str, raw: bytes) -> dict[str, Any]:
    """The result of a response line, or ControlError with the daemon's error."""
    try:
        response = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as err:
        raise ControlError(f"{command}: the daemon's answer is not JSON: {err}") from err
    if not isinstance(response, dict) or not isinstance(response.get("ok"), bool):
        raise ControlError(f"{command}: the daemon's answer has no 'ok' flag")
    if not response["ok"]:
        error = str(response.get("error") or "failed")
        raise ControlError(error if error.startswith(f"{command}: ") else f"{command}: {error}")
    result = response.get("result")
    if not isinstance(result, dict):
        raise ControlError(f"{command}: the daemon's answer has no 'result' object")
    return result
