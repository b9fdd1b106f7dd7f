"""``callbox web`` as its own process, and a built page without npm, for the web tests."""

from __future__ import annotations

import asyncio
import signal
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from daemon_helpers import CALLBOX, clean_env

TIMEOUT = 15.0
INDEX = "<!doctype html><title>callbox</title><script type=module src=/dist/main.js></script>\n"
MAIN_JS = "export const phone = 'callbox';\n"


def make_root(directory: Path) -> Path:
    """A built page without npm under ``directory``: index.html, style.css and dist/main.js."""
    root = directory / "web"
    (root / "dist").mkdir(parents=True)
    (root / "index.html").write_text(INDEX)
    (root / "style.css").write_text("body { margin: 0 }\n")
    (root / "dist" / "main.js").write_text(MAIN_JS)
    return root


@dataclass
class WebProcess:
    """A running ``callbox web`` and the base URL it printed."""

    process: asyncio.subprocess.Process
    url: str
    stderr: asyncio.StreamReader

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.url.rsplit(":", 1)[1])

    def threads(self) -> int:
        """How many threads the process has now (/proc/PID/status)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("Threads:"))[8:])

    async def stop(self) -> int:
        """SIGTERM, as systemd stops it; the exit code."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), TIMEOUT)


@dataclass
class WebProcesses:
    """Starts ``callbox web`` processes and stops every one at the end of a test."""

    started: list[WebProcess] = field(default_factory=list)

    async def start(self, *args: str | Path) -> WebProcess:
        """Start ``callbox web ARGS`` and return it once it says where it serves."""
        process = await asyncio.create_subprocess_exec(
            CALLBOX,
            "web",
            *map(str, args),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=clean_env(),
        )
        assert process.stdout is not None and process.stderr is not None
        line = (await asyncio.wait_for(process.stdout.readline(), TIMEOUT)).decode()
        if not line.startswith("serving "):
            await process.wait()
            error = (await process.stderr.read()).decode()
            raise AssertionError(f"callbox web did not start: {line}{error}")
        web = WebProcess(process, line.rsplit(" on ", 1)[1].strip(), process.stderr)
        self.started.append(web)
        return web

    async def stop_all(self) -> None:
        """Stop every process started."""
        for web in self.started:
            await web.stop()


def get(
    url: str, context: ssl.SSLContext | None = None, timeout: float = TIMEOUT, method: str = "GET"
) -> tuple[int, str, str]:
    """``method`` ``url`` (redirects followed): status, Content-Type, body."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            body = response.read().decode(errors="replace")
            return response.status, response.headers["Content-Type"], body
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], ""
