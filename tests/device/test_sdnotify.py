"""systemd's notify protocol as systemd sees it: datagrams on a real AF_UNIX socket."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.daemon import SystemdNotifier

TIMEOUT = 5.0


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def systemd_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """The receiving end systemd would hold: (path, bound datagram socket)."""
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(TIMEOUT)
        yield path, sock


def received(sock: socket.socket) -> str:
    return sock.recv(4096).decode("utf-8")


def test_ready_status_stopping_and_watchdog_are_the_documented_datagrams(
    systemd_socket: tuple[str, socket.socket],
) -> None:
    path, sock = systemd_socket
    notifier = SystemdNotifier(path)
    assert notifier.enabled
    notifier.ready()
    assert received(sock) == "READY=1"
    notifier.ready("door station up")
    assert received(sock) == "READY=1\nSTATUS=door station up"
    notifier.status("in call with flat1")
    assert received(sock) == "STATUS=in call with flat1"
    notifier.watchdog()
    assert received(sock) == "WATCHDOG=1"
    notifier.stopping()
    assert received(sock) == "STOPPING=1"


def test_status_text_cannot_inject_other_keys(systemd_socket: tuple[str, socket.socket]) -> None:
    path, sock = systemd_socket
    SystemdNotifier(path).status("broker down\nREADY=1")
    assert received(sock) == "STATUS=broker down READY=1"


def test_reloading_carries_the_monotonic_clock(systemd_socket: tuple[str, socket.socket]) -> None:
    path, sock = systemd_socket
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    SystemdNotifier(path).reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = received(sock).split("\n")
    assert first == "RELOADING=1"
    key, _, value = second.partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_socket_comes_from_the_environment(
    systemd_socket: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, sock = systemd_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    SystemdNotifier().ready()
    assert received(sock) == "READY=1"


def test_abstract_socket_with_at_sign() -> None:
    name = f"callbox-test-{secrets.token_hex(8)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(TIMEOUT)
        SystemdNotifier("@" + name).watchdog()
        assert received(sock) == "WATCHDOG=1"


def test_without_a_socket_every_call_is_a_no_op(caplog: pytest.LogCaptureFixture) -> None:
    notifier = SystemdNotifier()
    assert not notifier.enabled
    with caplog.at_level(logging.DEBUG, logger="device.daemon._sdnotify"):
        notifier.ready("x")
        notifier.status("x")
        notifier.reloading()
        notifier.watchdog()
        notifier.stopping()
    assert caplog.records == []


def test_send_error_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = SystemdNotifier(str(tmp_path / "gone"))
    with caplog.at_level(logging.WARNING, logger="device.daemon._sdnotify"):
        notifier.ready()
    assert "cannot notify systemd (READY=1)" in caplog.text


def test_relative_socket_path_is_refused_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="device.daemon._sdnotify"):
        notifier = SystemdNotifier("relative/notify")
    assert not notifier.enabled
    assert "NOTIFY_SOCKET='relative/notify'" in caplog.text


def test_watchdog_interval_is_half_of_watchdog_usec(
    systemd_socket: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    notifier = SystemdNotifier(systemd_socket[0])
    assert notifier.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert notifier.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert notifier.watchdog_interval() == 15.0


def test_watchdog_meant_for_another_process_is_ignored(
    systemd_socket: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert SystemdNotifier(systemd_socket[0]).watchdog_interval() is None


@pytest.mark.parametrize("value", ["", "abc", "0", "-5"])
def test_unusable_watchdog_usec_means_no_watchdog(
    systemd_socket: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", value)
    assert SystemdNotifier(systemd_socket[0]).watchdog_interval() is None


def test_no_watchdog_without_a_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert SystemdNotifier().watchdog_interval() is None


async def test_run_watchdog_returns_at_once_without_a_watchdog(
    systemd_socket: tuple[str, socket.socket],
) -> None:
    await asyncio.wait_for(SystemdNotifier(systemd_socket[0]).run_watchdog(lambda: True), TIMEOUT)


async def receive_async(sock: socket.socket) -> str:
    data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 4096), TIMEOUT)
    return data.decode("utf-8")


async def test_run_watchdog_pings_while_healthy_and_withholds_while_not(
    systemd_socket: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, sock = systemd_socket
    sock.setblocking(False)
    monkeypatch.setenv("WATCHDOG_USEC", "20000")  # a ping every 10 ms
    answers = iter([True, False, False, True, True])
    checks = 0

    def healthy() -> bool:
        nonlocal checks
        checks += 1
        return next(answers, True)

    task = asyncio.create_task(SystemdNotifier(path).run_watchdog(healthy))
    try:
        assert await receive_async(sock) == "WATCHDOG=1"
        assert checks == 1
        assert await receive_async(sock) == "WATCHDOG=1"
        assert checks == 4  # the two unhealthy checks sent nothing
        assert await receive_async(sock) == "WATCHDOG=1"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_run_watchdog_treats_a_raising_check_as_unhealthy(
    systemd_socket: tuple[str, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path, sock = systemd_socket
    sock.setblocking(False)
    monkeypatch.setenv("WATCHDOG_USEC", "20000")
    checks = 0

    def healthy() -> bool:
        nonlocal checks
        checks += 1
        if checks == 1:
            raise RuntimeError("camera thread is gone")
        return True

    task = asyncio.create_task(SystemdNotifier(path).run_watchdog(healthy))
    try:
        assert await receive_async(sock) == "WATCHDOG=1"
        assert checks == 2
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert "health check raised" in caplog.text
    assert "camera thread is gone" in caplog.text
    assert "withholding pings" in caplog.text
