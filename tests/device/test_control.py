"""The control channel between the CLI and the daemon, over a real socket."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from device.daemon._control import (
    MAX_REQUEST_BYTES,
    ControlError,
    ControlServer,
    DaemonNotRunningError,
    Handler,
    request,
    request_sync,
)

TIMEOUT = 5.0


class Daemon:
    """The handlers a test daemon serves, and what they saw."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.slow_started = asyncio.Event()
        self.slow_cancelled = asyncio.Event()

    async def status(self, args: dict[str, Any]) -> dict[str, Any]:
        self.seen.append(args)
        return {"state": "idle", "args": args}

    async def fail(self, args: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("camera unplugged")

    async def refuse(self, args: dict[str, Any]) -> dict[str, Any]:
        raise ControlError("no contact 'flat9'")

    async def refuse_named(self, args: dict[str, Any]) -> dict[str, Any]:
        raise ControlError("refuse_named: 'address' must be a string")

    async def not_a_dict(self, args: dict[str, Any]) -> dict[str, Any]:
        return ["idle"]  # type: ignore[return-value]

    async def not_json(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"when": object()}

    async def slow(self, args: dict[str, Any]) -> dict[str, Any]:
        self.slow_started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.slow_cancelled.set()
            raise
        return {}

    def handlers(self) -> dict[str, Handler]:
        return {
            "status": self.status,
            "fail": self.fail,
            "refuse": self.refuse,
            "refuse_named": self.refuse_named,
            "not_a_dict": self.not_a_dict,
            "not_json": self.not_json,
            "slow": self.slow,
        }


@pytest.fixture
def daemon() -> Daemon:
    return Daemon()


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "control.sock"


@pytest.fixture
async def server(daemon: Daemon, sock_path: Path) -> AsyncIterator[ControlServer]:
    server = ControlServer(sock_path, daemon.handlers())
    await server.start()
    yield server
    await server.close()


async def raw_exchange(path: Path, data: bytes, *, eof: bool = False) -> list[dict[str, Any]]:
    """Send raw bytes as a misbehaving client would; return every response line until EOF."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(data)
        if eof:
            writer.write_eof()
        await writer.drain()
        if not eof:
            writer.write_eof()
        raw = await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()
        await writer.wait_closed()
    return [json.loads(line) for line in raw.splitlines()]


def stale_socket(path: Path) -> None:
    """Leave a socket file nobody listens on, as a killed daemon does."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))


async def test_request_returns_the_handlers_result(
    server: ControlServer, daemon: Daemon, sock_path: Path
) -> None:
    result = await request(sock_path, "status", {"verbose": True})
    assert result == {"state": "idle", "args": {"verbose": True}}
    assert await request(sock_path, "status") == {"state": "idle", "args": {}}
    assert daemon.seen == [{"verbose": True}, {}]


async def test_request_sync_is_the_same_for_the_cli(server: ControlServer, sock_path: Path) -> None:
    result = await asyncio.to_thread(request_sync, sock_path, "status", {"n": 1})
    assert result == {"state": "idle", "args": {"n": 1}}


async def test_socket_is_group_accessible_only(server: ControlServer, sock_path: Path) -> None:
    info = os.stat(sock_path)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o660


async def test_missing_socket_means_daemon_not_running(sock_path: Path) -> None:
    with pytest.raises(DaemonNotRunningError, match="daemon is not running") as caught:
        await request(sock_path, "status")
    assert str(sock_path) in str(caught.value)


async def test_stale_socket_means_daemon_not_running(sock_path: Path) -> None:
    stale_socket(sock_path)
    with pytest.raises(DaemonNotRunningError, match="nothing listens"):
        await request(sock_path, "status")


async def test_daemon_that_does_not_answer_times_out(
    server: ControlServer, daemon: Daemon, sock_path: Path
) -> None:
    with pytest.raises(ControlError, match=r"did not answer 'slow' within 0\.2 s"):
        await request(sock_path, "slow", timeout=0.2)


async def test_handler_exception_is_answered_and_logged_with_traceback(
    server: ControlServer, sock_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ControlError, match=r"^fail: camera unplugged$"):
        await request(sock_path, "fail")
    failures = [r for r in caplog.records if r.exc_info and "fail" in r.getMessage()]
    assert failures, caplog.text
    assert await request(sock_path, "status") == {"state": "idle", "args": {}}


async def test_handler_refusal_is_answered_without_traceback(
    server: ControlServer, sock_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ControlError, match=r"^refuse: no contact 'flat9'$"):
        await request(sock_path, "refuse")
    assert "no contact 'flat9'" in caplog.text
    assert not any(r.exc_info for r in caplog.records)
    with pytest.raises(ControlError, match=r"^refuse_named: 'address' must be a string$"):
        await request(sock_path, "refuse_named")  # not "refuse_named: refuse_named: ..."


async def test_unknown_command_names_the_known_ones(server: ControlServer, sock_path: Path) -> None:
    with pytest.raises(ControlError, match=r"unknown command 'reboot' .*known: fail, .*status"):
        await request(sock_path, "reboot")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"status\n", "request is not JSON"),
        (b"\xff\xfe\n", "request is not JSON"),
        (b"\n", "empty request line"),
        (b'["status"]\n', "request must be a JSON object, not list"),
        (b'{"args": {}}\n', "request needs a 'command' string"),
        (b'{"command": 7}\n', "request needs a 'command' string"),
        (b'{"command": "status", "args": [1]}\n', "'args' must be a JSON object, not list"),
        (b'{"command": "status", "sudo": true}\n', "unknown request field(s): 'sudo'"),
    ],
)
async def test_bad_request_is_answered_and_the_connection_keeps_serving(
    server: ControlServer,
    sock_path: Path,
    caplog: pytest.LogCaptureFixture,
    line: bytes,
    reason: str,
) -> None:
    good = b'{"command": "status"}\n'
    responses = await raw_exchange(sock_path, line + good)
    assert len(responses) == 2
    assert responses[0]["ok"] is False
    assert reason in responses[0]["error"]
    assert responses[1] == {"ok": True, "result": {"state": "idle", "args": {}}}
    assert reason in caplog.text


async def test_oversize_line_is_refused_and_the_server_keeps_serving(
    server: ControlServer, sock_path: Path
) -> None:
    huge = b'{"command": "status", "args": {"x": "' + b"a" * MAX_REQUEST_BYTES + b'"}}\n'
    responses = await raw_exchange(sock_path, huge)
    assert responses == [
        {"ok": False, "error": f"request line longer than {MAX_REQUEST_BYTES} bytes"}
    ]
    assert await request(sock_path, "status") == {"state": "idle", "args": {}}


async def test_line_without_newline_is_refused(server: ControlServer, sock_path: Path) -> None:
    responses = await raw_exchange(sock_path, b'{"command": "status"}', eof=True)
    assert responses == [{"ok": False, "error": "incomplete request: no newline at the end"}]


async def test_client_request_too_large_is_refused_before_sending(
    server: ControlServer, daemon: Daemon, sock_path: Path
) -> None:
    with pytest.raises(ControlError, match="request longer than"):
        await request(sock_path, "status", {"x": "a" * MAX_REQUEST_BYTES})
    assert daemon.seen == []


@pytest.mark.parametrize("command", ["not_a_dict", "not_json"])
async def test_bad_handler_result_is_an_internal_error(
    server: ControlServer, sock_path: Path, command: str
) -> None:
    with pytest.raises(ControlError, match=f"^{command}: internal error"):
        await request(sock_path, command)


async def test_second_daemon_is_refused_and_the_first_keeps_serving(
    server: ControlServer, sock_path: Path
) -> None:
    second = ControlServer(sock_path, {})
    with pytest.raises(ControlError, match="another callbox daemon is already running"):
        await second.start()
    await second.close()
    assert await request(sock_path, "status") == {"state": "idle", "args": {}}


async def test_start_replaces_a_stale_socket(daemon: Daemon, sock_path: Path) -> None:
    stale_socket(sock_path)
    server = ControlServer(sock_path, daemon.handlers())
    await server.start()
    try:
        assert await request(sock_path, "status") == {"state": "idle", "args": {}}
    finally:
        await server.close()


async def test_start_refuses_to_replace_a_file_that_is_not_a_socket(
    daemon: Daemon, sock_path: Path
) -> None:
    await asyncio.to_thread(sock_path.write_bytes, b"precious")
    with pytest.raises(ControlError, match="exists and is not a socket"):
        await ControlServer(sock_path, daemon.handlers()).start()
    assert await asyncio.to_thread(sock_path.read_bytes) == b"precious"


async def test_start_in_a_missing_directory_names_the_path(daemon: Daemon, tmp_path: Path) -> None:
    path = tmp_path / "missing" / "control.sock"
    with pytest.raises(ControlError, match="cannot listen"):
        await ControlServer(path, daemon.handlers()).start()


async def test_close_is_idempotent_and_removes_the_socket(daemon: Daemon, sock_path: Path) -> None:
    server = ControlServer(sock_path, daemon.handlers())
    await server.close()  # never started
    await server.start()
    await server.close()
    assert not await asyncio.to_thread(sock_path.exists)
    await server.close()
    with pytest.raises(DaemonNotRunningError):
        await request(sock_path, "status")


async def test_close_ends_a_request_in_progress(
    daemon: Daemon, sock_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = ControlServer(sock_path, daemon.handlers())
    await server.start()
    pending = asyncio.create_task(request(sock_path, "slow", timeout=TIMEOUT))
    await asyncio.wait_for(daemon.slow_started.wait(), TIMEOUT)
    await asyncio.wait_for(server.close(), TIMEOUT)
    assert daemon.slow_cancelled.is_set()
    with pytest.raises(ControlError, match="closed the connection without answering"):
        await pending


async def test_close_leaves_a_newer_daemons_socket_alone(daemon: Daemon, sock_path: Path) -> None:
    old = ControlServer(sock_path, {})
    await old.start()
    os.unlink(sock_path)  # e.g. a newer instance cleaned up and started
    new = ControlServer(sock_path, daemon.handlers())
    await new.start()
    try:
        await old.close()
        assert await request(sock_path, "status") == {"state": "idle", "args": {}}
    finally:
        await new.close()


async def test_refused_request_log_names_the_client_process(
    server: ControlServer, sock_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="device.daemon._control"):
        await raw_exchange(sock_path, b"nonsense\n")
    assert f"pid {os.getpid()} (uid {os.getuid()})" in caplog.text
