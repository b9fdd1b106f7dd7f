"""The RTSP server of the door camera: GStreamer's RTSP server, fed H.264 on stdin.

The daemon runs this file as a child process under Debian's ``/usr/bin/python3``: the
project's venv cannot import ``gi`` (PyGObject and GStreamer come from Debian's packages),
and a crash here never takes the daemon down. It imports only the standard library and
``gi``, and ``gi`` only in :func:`main`, so the module imports anywhere (the daemon reads
its wire format from here).

Wire protocol with the daemon:

- stdin: one line of JSON settings (``address``, ``port``, ``path``, ``username``,
  ``password``, ``max_clients``: the password never appears in the command line), then
  access units, each ``HEADER`` (flags, capture time in microseconds, size) followed by
  ``size`` bytes of H.264 Annex B (SPS/PPS in front of every keyframe). End of stdin: exit.
  Each unit's pipeline time keeps the camera's spacing (its capture time minus the previous
  unit's) but never runs ahead of the pipeline's clock nor lags it by more than
  ``MAX_LAG_S``: the media's running time stands still between a viewer's DESCRIBE
  (preroll) and its PLAY, and timestamps mapped from the camera's clock alone then ran
  ahead of it and stalled the stream (measured: ffmpeg saw one timestamp for seconds).
  Before the pipeline has a clock, appsrc stamps the unit as it leaves (``do-timestamp``).
- stdout: one JSON event per line: ``{"event": "ready", "port": N}`` once listening,
  ``{"event": "feed", "on": true|false}`` when the shared media wants access units or no
  longer does, ``{"event": "keyframe"}`` when a client starts playing (it needs one now),
  ``{"event": "clients", "count": N}``.
- stderr: log lines. Exit status 3: gi or a GStreamer element is missing; 2: bad settings.

The media is one ``appsrc ! h264parse ! rtph264pay`` shared by every client (one encode,
many viewers), behind digest authentication; at most ``max_clients`` play at once, the
next gets 503 Service Unavailable. A client gets RTP from its PLAY on, not from the
keyframe that prerolled the media: at each PLAY the media drops units up to the next
keyframe, asked for then (the ``keyframe`` event), so the new client starts at a picture it
can decode (the others see the last picture held a few frame times longer). A media per
client would start each at its own keyframe without that, but with GStreamer 1.22 a client
killed mid-stream then stalled the other clients' streams (tests/rtsp: the stream survives
a client leaving), so the media is shared.
"""

from __future__ import annotations

import json
import logging
import signal
import struct
import sys
import threading
import types
from typing import Any, BinaryIO

HEADER = struct.Struct("!BqI")
"""Access unit header: flags (bit 0: keyframe), pts in microseconds (-1: none), size."""
FLAG_KEYFRAME = 1
MAX_ACCESS_UNIT = 4 * 1024 * 1024
"""A bigger access unit is a broken stream: the child stops."""
MAX_LAG_S = 0.1
"""A unit's pipeline time is at most this far behind the pipeline's clock."""
MAX_QUEUED_BYTES = 1024 * 1024
"""appsrc holding more than this (the pipeline is slow): drop up to the next keyframe."""
EXIT_BAD_SETTINGS = 2
EXIT_MISSING = 3
ROLE = "viewer"
# h264parse, not rtph264pay, puts SPS/PPS in front of each keyframe: the payloader does it
# in front of every IDR *slice*, and a keyframe of several slices (x264's sliced threads)
# then decoded as half pictures (ffmpeg: "concealing 600 DC, 600 AC, 600 MV errors").
LAUNCH = (
    "( appsrc name=src is-live=true format=time block=false do-timestamp=true"
    f" max-bytes={MAX_QUEUED_BYTES * 2}"
    " caps=video/x-h264,stream-format=byte-stream,alignment=au"
    " ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 config-interval=0 )"
)
NEEDED_ELEMENTS = ("appsrc", "h264parse", "rtph264pay")
MISSING_HINT = (
    "apt install gir1.2-gst-rtsp-server-1.0 python3-gst-1.0 gstreamer1.0-plugins-base"
    " gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"
)

_log = logging.getLogger("callbox.rtsp")


class Events:
    """The events this process writes to stdout, one JSON object per line."""

    def __init__(self, out: Any) -> None:
        self._out = out
        self._lock = threading.Lock()

    def send(self, event: str, **fields: Any) -> None:
        """Write one event and flush it."""
        with self._lock:
            self._out.write(json.dumps({"event": event, **fields}) + "\n")
            self._out.flush()


def read_settings(stream: BinaryIO) -> dict[str, Any]:
    """The settings line (ValueError naming what is wrong)."""
    line = stream.readline(65536)
    settings = json.loads(line)
    for key, kind in (
        ("address", str),
        ("port", int),
        ("path", str),
        ("username", str),
        ("password", str),
        ("max_clients", int),
    ):
        if not isinstance(settings.get(key), kind):
            raise ValueError(f"setting {key!r} is missing or not a {kind.__name__}")
    return dict(settings)


def read_access_unit(stream: BinaryIO) -> tuple[int, int, bytes] | None:
    """The next (flags, pts_us, data) from the daemon; None at end of stream."""
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    flags, pts_us, size = HEADER.unpack(head)
    if size > MAX_ACCESS_UNIT:
        raise ValueError(f"an access unit of {size} bytes: the stream is broken")
    data = stream.read(size)
    if len(data) < size:
        return None
    return flags, pts_us, data


class Viewer:
    """One RTSP client: where it comes from and whether it holds one of the playing slots."""

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.playing = False


class Server:
    """GStreamer's RTSP server with one shared, authenticated H.264 media fed by ``push``."""

    def __init__(self, gi: Any, settings: dict[str, Any], events: Events) -> None:
        self._gst = gi.Gst
        self._rtsp = gi.GstRtsp
        self._server_mod = gi.GstRtspServer
        self._settings = settings
        self._events = events
        self._lock = threading.Lock()
        self._src: Any = None
        self._waiting_key = True
        self._last: tuple[int, int] | None = None  # (pipeline time ns, capture time us)
        self._watching = 0  # clients playing
        self.server = self._build()

    def _build(self) -> Any:
        mod, settings = self._server_mod, self._settings
        server = mod.RTSPServer()
        server.set_address(settings["address"])
        server.set_service(str(settings["port"]))
        factory = mod.RTSPMediaFactory()
        factory.set_launch(LAUNCH)
        factory.set_shared(True)
        factory.set_protocols(self._rtsp.RTSPLowerTrans.TCP | self._rtsp.RTSPLowerTrans.UDP)
        factory.connect("media-configure", self._media_configure)
        permissions = mod.RTSPPermissions()
        for permission in (
            mod.RTSP_PERM_MEDIA_FACTORY_ACCESS,
            mod.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT,
        ):
            permissions.add_permission_for_role(ROLE, permission, True)
        factory.set_permissions(permissions)
        auth = mod.RTSPAuth()
        auth.set_supported_methods(self._rtsp.RTSPAuthMethod.DIGEST)
        token = mod.RTSPToken()
        token.set_string(mod.RTSP_TOKEN_MEDIA_FACTORY_ROLE, ROLE)
        auth.add_digest(settings["username"], settings["password"], token)
        server.set_auth(auth)
        server.get_mount_points().add_factory(settings["path"], factory)
        server.connect("client-connected", self._client_connected)
        return server

    # clients (GLib main loop) ------------------------------------------------------------------

    def _client_connected(self, _server: Any, client: Any) -> None:
        viewer = Viewer(client.get_connection().get_ip())
        _log.info("client %s connected", viewer.peer)
        client.connect("pre-play-request", self._pre_play, viewer)
        client.connect("closed", self._closed, viewer)

    def _pre_play(self, _client: Any, _ctx: Any, viewer: Viewer) -> Any:
        if not viewer.playing:
            limit = self._settings["max_clients"]
            if self._watching >= limit:
                _log.warning(
                    "client %s refused: %d clients already watch (rtsp.max_clients = %d)",
                    viewer.peer,
                    self._watching,
                    limit,
                )
                return self._rtsp.RTSPStatusCode.SERVICE_UNAVAILABLE
            viewer.playing = True
            self._watching += 1
            _log.info("client %s plays (%d watching)", viewer.peer, self._watching)
            self._events.send("clients", count=self._watching)
        with self._lock:  # the client gets RTP from now on: start it at the keyframe asked for
            self._waiting_key = True
        self._events.send("keyframe")
        return self._rtsp.RTSPStatusCode.OK

    def _closed(self, _client: Any, viewer: Viewer) -> None:
        _log.info("client %s disconnected", viewer.peer)
        if viewer.playing:
            viewer.playing = False
            self._watching -= 1
            self._events.send("clients", count=self._watching)

    # media ----------------------------------------------------------------------------------------

    def _media_configure(self, _factory: Any, media: Any) -> None:
        src = media.get_element().get_by_name("src")
        media.connect("unprepared", self._unprepared)
        with self._lock:
            self._src, self._waiting_key, self._last = src, True, None
        _log.info("stream starts")
        self._events.send("feed", on=True)
        self._events.send("keyframe")

    def _unprepared(self, _media: Any) -> None:
        with self._lock:
            self._src = None
        _log.info("stream stops: nobody watches")
        self._events.send("feed", on=False)

    def push(self, flags: int, pts_us: int, data: bytes) -> None:
        """Hand one access unit to the media (reader thread); dropped while nobody watches."""
        keyframe = bool(flags & FLAG_KEYFRAME)
        with self._lock:
            src = self._src
            if src is None or (self._waiting_key and not keyframe):
                return
            if src.get_property("current-level-bytes") > MAX_QUEUED_BYTES:
                self._waiting_key = True
                _log.warning("the stream is slow: frames dropped up to the next keyframe")
                self._events.send("keyframe")
                return
            self._waiting_key = False
            pts = self._timestamp(src, pts_us)
        gst = self._gst
        buffer = gst.Buffer.new_wrapped(data)
        buffer.pts = buffer.dts = pts  # no B-frames: decode order is display order
        if not keyframe:
            buffer.set_flags(gst.BufferFlags.DELTA_UNIT)
        src.emit("push-buffer", buffer)

    def _timestamp(self, src: Any, pts_us: int) -> int:
        """The unit's pipeline time: the camera's spacing, within MAX_LAG_S of the clock.

        Only while the media plays: its running time stands still while it is paused
        (between a viewer's DESCRIBE and PLAY), and a time taken from the clock then lies
        in the future once it plays (the sinks wait for it: the stream stalls). Otherwise
        none, and appsrc stamps the unit as it leaves (``do-timestamp``).
        """
        gst = self._gst
        none = int(gst.CLOCK_TIME_NONE)
        _, state, pending = src.get_state(0)  # no wait: the state it is in now
        playing = state == gst.State.PLAYING and pending == gst.State.VOID_PENDING
        now = src.get_current_running_time() if playing and pts_us >= 0 else none
        if now == none:
            self._last = None
            return none
        at = now
        if self._last is not None:
            last, last_us = self._last
            spaced = last + (pts_us - last_us) * 1000
            at = max(last, min(now, max(now - int(MAX_LAG_S * 1e9), spaced)))
        self._last = (at, pts_us)
        return int(at)


def _load_gi() -> Any:
    """GStreamer's modules through gi, initialised; SystemExit(EXIT_MISSING) if missing."""
    try:
        import gi  # Debian's PyGObject: only this child process imports it

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtsp", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtsp, GstRtspServer
    except (ImportError, ValueError) as err:
        _log.error("GStreamer's RTSP server cannot be loaded (%s): %s", err, MISSING_HINT)
        raise SystemExit(EXIT_MISSING) from err
    Gst.init(None)
    missing = [name for name in NEEDED_ELEMENTS if Gst.ElementFactory.find(name) is None]
    if missing:
        _log.error("GStreamer elements missing: %s: %s", ", ".join(missing), MISSING_HINT)
        raise SystemExit(EXIT_MISSING)
    return types.SimpleNamespace(GLib=GLib, Gst=Gst, GstRtsp=GstRtsp, GstRtspServer=GstRtspServer)


def _feed(server: Server, stream: BinaryIO, stop: Any) -> None:
    """Reader thread: access units from stdin into the media until end of stream."""
    try:
        while (unit := read_access_unit(stream)) is not None:
            server.push(*unit)
    except (OSError, ValueError) as err:
        _log.error("input from the daemon broken: %s", err)
    finally:
        stop()


def main() -> int:
    """Run the server until stdin ends or SIGTERM; the exit status says why it stopped."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")
    gi = _load_gi()
    stdin = sys.stdin.buffer
    try:
        settings = read_settings(stdin)
    except ValueError as err:
        _log.error("bad settings from the daemon: %s", err)
        return EXIT_BAD_SETTINGS
    events = Events(sys.stdout)
    server = Server(gi, settings, events)
    loop = gi.GLib.MainLoop()
    if server.server.attach(None) == 0:
        _log.error("cannot listen on %s port %s", settings["address"], settings["port"])
        return 1
    port = server.server.get_bound_port()
    _log.info("listening on rtsp://%s:%d%s", settings["address"], port, settings["path"])
    events.send("ready", port=port)
    gi.GLib.unix_signal_add(gi.GLib.PRIORITY_DEFAULT, signal.SIGTERM, lambda: loop.quit() or False)
    reader = threading.Thread(
        target=_feed,
        args=(server, stdin, lambda: gi.GLib.idle_add(loop.quit)),
        name="rtsp-feed",
        daemon=True,
    )
    failed: list[str] = []

    def fail(kind: type[BaseException], error: BaseException, trace: Any) -> None:
        _log.critical("the RTSP server failed", exc_info=(kind, error, trace))
        failed.append(str(error))
        loop.quit()

    sys.excepthook = fail  # PyGObject reports an exception of a callback here
    reader.start()
    loop.run()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
