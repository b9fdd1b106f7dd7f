"""Hostile control requests (issue 15, finding 8): deep nesting, size, non-JSON constants.

Against the control server over its real socket, and against ``callbox run`` as a process.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import DaemonSite, callbox, start_daemon_site

from device.daemon._control import (
    MAX_REQUEST_BYTES,
    MAX_REQUEST_DEPTH,
    BadRequestError,
    ControlServer,
    parse_request,
    request,
)

TIMEOUT = 10.0
DEEP = (
    b"[" * 60_000 + b"\n"
)  # the finding: RecursionError in the decoder (60 KB, under the size cap)
DEEP_ARGS = b'{"command": "status", "args": {"a": ' + b"[" * 60_000 + b"\n"
STATUS = b'{"command": "status"}\n'


async def exchange(path: Path, data: bytes) -> list[dict[str, Any]]:
    """Send ``data`` as a client would, then EOF; every response line until the server closes."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        raw = await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()
        await writer.wait_closed()
    return [json.loads(line) for line in raw.splitlines()]


async def status(args: dict[str, Any]) -> dict[str, Any]:
    return {"state": "idle", "args": args}


@pytest.fixture
async def sock_path(tmp_path: Path) -> AsyncIterator[Path]:
    path = tmp_path / "control.sock"
    server = ControlServer(path, {"status": status})
    await server.start()
    yield path
    await server.close()


@pytest.mark.parametrize("line", [DEEP, DEEP_ARGS], ids=["array", "inside-args"])
async def test_a_deeply_nested_request_is_answered_and_logged_and_the_connection_goes_on(
    sock_path: Path, caplog: pytest.LogCaptureFixture, line: bytes
) -> None:
    with caplog.at_level(logging.WARNING, logger="device.daemon._control"):
        responses = await exchange(sock_path, line + STATUS)
    reason = f"request nested deeper than {MAX_REQUEST_DEPTH} levels"
    assert responses == [
        {"ok": False, "error": reason},
        {"ok": True, "result": {"state": "idle", "args": {}}},
    ]
    assert reason in caplog.text
    assert "RecursionError" not in caplog.text and "Traceback" not in caplog.text


def nested(depth: int) -> dict[str, Any]:
    """A request ``depth`` levels deep, the request object included."""
    value: Any = 1
    for _ in range(depth - 2):
        value = [value]
    return {"command": "status", "args": {"a": value}}


async def test_nesting_up_to_the_limit_is_accepted_one_more_is_refused(sock_path: Path) -> None:
    deepest = nested(MAX_REQUEST_DEPTH)
    result = await request(sock_path, "status", deepest["args"])
    assert result["args"] == deepest["args"]
    line = json.dumps(nested(MAX_REQUEST_DEPTH + 1)).encode() + b"\n"
    [refused] = await exchange(sock_path, line)
    assert refused == {
        "ok": False,
        "error": f"request nested deeper than {MAX_REQUEST_DEPTH} levels",
    }


async def test_brackets_inside_strings_are_not_nesting(sock_path: Path) -> None:
    args = {"name": "[" * 100 + '\\"{' * 50, "quote": '"'}
    assert (await request(sock_path, "status", args))["args"] == args


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"command": "status", "args": {"x": NaN}}', "request is not JSON: NaN is not JSON"),
        (b'{"command": "status", "args": {"x": -Infinity}}', "-Infinity is not JSON"),
        (b'{"command": "status", "args": {"x": ' + b"9" * 5000 + b"}}", "request is not JSON"),
        (b"]]]]{{{{", "request is not JSON"),
        (b"\n", "empty request line"),
        (b"x" * (MAX_REQUEST_BYTES + 1), f"longer than {MAX_REQUEST_BYTES} bytes"),
    ],
)
def test_parse_request_refuses_with_its_own_error(line: bytes, reason: str) -> None:
    with pytest.raises(BadRequestError, match=r"^(request|empty)") as caught:
        parse_request(line)
    assert reason in str(caught.value)


def test_parse_request_returns_the_command_and_args() -> None:
    parsed = parse_request(b'{"command": "call", "args": {"address": "door", "video": true}}\n')
    assert (parsed.command, parsed.args) == ("call", {"address": "door", "video": True})
    assert parse_request(b'{"command": "reload", "args": null}').args == {}


# the daemon as it runs --------------------------------------------------------------------------


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[DaemonSite]:
    site = await start_daemon_site(tmp_path)
    yield site
    await site.close()


async def test_the_daemon_answers_a_60000_deep_request_and_keeps_running(site: DaemonSite) -> None:
    daemon = await site.start_daemon()
    responses = await exchange(site.control_path, DEEP + STATUS)
    assert responses[0] == {
        "ok": False,
        "error": f"request nested deeper than {MAX_REQUEST_DEPTH} levels",
    }
    assert responses[1]["ok"] is True and responses[1]["result"]["address"] == "door"
    [oversize] = await exchange(site.control_path, b"[" * (MAX_REQUEST_BYTES + 10) + b"\n")
    assert oversize == {"ok": False, "error": f"request line longer than {MAX_REQUEST_BYTES} bytes"}

    result = await callbox("status", "--json", "--control", site.control_path)
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["broker"]["connected"] is True
    assert daemon.process.returncode is None
    log = daemon.log()
    assert "refused a request from pid" in log and "nested deeper than" in log
    assert "RecursionError" not in log and "Traceback" not in log
