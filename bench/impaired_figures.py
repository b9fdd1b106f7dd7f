"""The figures of bench/impaired_call.py: what the endpoints recorded, reduced per direction.

Each endpoint (bench/impaired_endpoint.py) reports raw timelines with CLOCK_MONOTONIC
times: decoded video frames (latency, capture counter), decoded audio frames (pts), call
statuses and receive statistics sampled once a second. :func:`figures` reduces one call's
to the figures of its window, :func:`summarize` takes medians over runs, and
:func:`markdown` renders a report as the table of docs/performance.md.
"""

from __future__ import annotations

import itertools
import json
import statistics
from collections.abc import Iterable
from typing import Any

from services.callapi import CallStatus


def is_terminal(status: str) -> bool:
    """Whether a recorded status ends the call (callbox status, or bare pc state)."""
    if status in ("pc:failed", "pc:closed"):
        return True
    return status in CallStatus.__members__ and bool(CallStatus[status] & 0x40)


def figures(
    reports: dict[str, dict[str, Any]],
    started: float,
    t0: float,
    t1: float,
    events: dict[str, Any],
) -> dict[str, Any]:
    """Per direction (named by sender), the window's figures and the event's outcome."""
    result: dict[str, Any] = {"window_s": round(t1 - t0, 1), "setup_s": round(t0 - started, 2)}
    for side, direction in (("b", "door_to_indoor"), ("a", "indoor_to_door")):
        report = reports.get(side)
        if report is None:
            result[direction] = None
            continue
        result[direction] = {
            **video_figures(report["video"], t0, t1),
            **audio_figures(report["audio"], t0, t1),
            "receive_stats": stats_figures(report["samples"], t0, t1),
            **event_figures(report, events, t1),
        }
    if "door_ended" in events:
        ended = events["door_ended"]
        result["door_call_end_after_kill_s"] = (
            round(ended - events["killed"], 2) if ended is not None else None
        )
        door = reports.get("a")
        result["door_end_status"] = _first_terminal(door["status"]) if door else None
    return result


def video_figures(frames: list[list[Any]], t0: float, t1: float) -> dict[str, Any]:
    """Frames per whole second (median, worst), the longest freeze, the latency.

    ``video_stale_frames``: decoded frames whose capture counter is not above every earlier
    one, i.e. an old picture shown again (a decoder fed frames whose references were lost).
    """
    times = [f[0] for f in frames if t0 <= f[0] <= t1]
    seconds = max(1, int(t1 - t0))
    counts = [0] * seconds
    for t in times:
        index = int(t - t0)
        if index < seconds:
            counts[index] += 1
    edges = [t0, *times, t1]
    freeze = max(b - a for a, b in itertools.pairwise(edges))
    latencies = [f[1] for f in frames if t0 <= f[0] <= t1 and f[1] is not None]
    tail = [f[1] for f in frames if t1 - 5 <= f[0] <= t1 and f[1] is not None]
    stale, newest = 0, -1
    for f in frames:  # a counter not above every earlier one: an old picture shown again
        counter = f[2] if len(f) > 2 else None
        if counter is None:
            continue
        if counter <= newest and t0 <= f[0] <= t1:
            stale += 1
        newest = max(newest, counter)
    return {
        "video_fps_median": statistics.median(counts),
        "video_fps_worst": min(counts),
        "video_longest_freeze_ms": round(freeze * 1000),
        "video_latency_ms_median": _round(_median(latencies)),
        "video_latency_ms_p95": _round(_percentile(latencies, 95)),
        "video_latency_ms_last5s": _round(_median(tail)),
        "video_frames": len(times),
        "video_stale_frames": stale,
    }


def audio_figures(frames: list[list[Any]], t0: float, t1: float) -> dict[str, Any]:
    """Missing audio from pts gaps and the window's silent edges; relative delay."""
    inside = [f for f in frames if t0 <= f[0] <= t1 and f[1] is not None]
    if not inside:
        return {"audio_missing_ms": round((t1 - t0) * 1000), "audio_frames": 0}
    missing = max(0.0, inside[0][0] - t0 - 0.02) + max(0.0, t1 - inside[-1][0] - 0.02)
    longest = 0.0
    delays: list[float] = []
    segment: list[float] = []
    for previous, current in itertools.pairwise(inside):
        expected = previous[1] + previous[2] / previous[3]
        gap = current[1] - expected
        if -0.001 <= gap < 60:  # the same stream: a pts gap is audio that never came
            missing += max(0.0, gap)
            longest = max(longest, gap)
        else:  # a new stream (a rebuilt session): what the arrival times say is missing
            arrival_gap = current[0] - previous[0] - previous[2] / previous[3]
            missing += max(0.0, arrival_gap)
            longest = max(longest, arrival_gap)
            delays += _relative(segment)
            segment = []
        segment.append(current[0] - current[1])
    delays += _relative(segment)
    return {
        "audio_missing_ms": round(missing * 1000),
        "audio_longest_gap_ms": round(longest * 1000),
        "audio_relative_delay_ms_median": _round(_median(delays)),
        "audio_relative_delay_ms_p95": _round(_percentile(delays, 95)),
        "audio_frames": len(inside),
    }


def _relative(delays: list[float]) -> list[float]:
    """Delays above the segment's smallest one, in ms."""
    if not delays:
        return []
    low = min(delays)
    return [(d - low) * 1000 for d in delays]


def stats_figures(samples: list[list[Any]], t0: float, t1: float) -> dict[str, Any]:
    """The receive statistics sampled in the window: last values, medians of numbers.

    Whatever the installed session reports (``audio_receive_stats()`` and the like) is
    flattened to ``name.field`` keys; for each number the last sample in the window, its
    change over the window (``delta``: what a counter counted in it) and the median over the
    window's samples are given. aiortc's inbound RTP counters come too.
    """
    inside = [values for at, values in samples if t0 <= at <= t1]
    if not inside:
        return {}
    series: dict[str, list[float]] = {}
    for values in inside:
        for key, number in _flatten(values):
            series.setdefault(key, []).append(number)
    return {
        key: {
            "last": _round(numbers[-1]),
            "delta": _round(numbers[-1] - numbers[0]),
            "median": _round(statistics.median(numbers)),
        }
        for key, numbers in series.items()
    }


def _flatten(values: Any, prefix: str = "") -> Iterable[tuple[str, float]]:
    if isinstance(values, dict):
        for key, value in values.items():
            yield from _flatten(value, f"{prefix}{key}.")
    elif isinstance(values, (bool, int | float)):
        yield prefix.rstrip("."), float(values)


def event_figures(report: dict[str, Any], events: dict[str, Any], t1: float) -> dict[str, Any]:
    """The call's fate on this side: ended or not, RECONNECTING, media back after an outage."""
    statuses = [(at, s) for at, s in report["status"] if at <= t1]
    ended = _first_terminal(statuses)
    result: dict[str, Any] = {"survived_window": ended is None, "ended_with": ended}
    after = [(at, s) for at, s in report["status"] if at > t1]
    result["end_status_after_hangup"] = _first_terminal(after)
    start = events.get("outage_start") or events.get("broker_killed")
    if start is not None:
        ended_at = next((at for at, s in statuses if at >= start and is_terminal(s)), None)
        result["ended_after_event_s"] = _round(ended_at - start if ended_at else None, 2)
        result["reconnecting_after_s"] = next(
            (round(at - start, 2) for at, s in statuses if at >= start and s == "RECONNECTING"),
            None,
        )
    back = events.get("outage_end")
    if back is not None:
        audio = next((f[0] for f in report["audio"] if f[0] > back), None)
        video = next((f[0] for f in report["video"] if f[0] > back), None)
        result["audio_back_after_path_s"] = _round(audio - back if audio else None, 2)
        result["video_back_after_path_s"] = _round(video - back if video else None, 2)
    return result


def _first_terminal(statuses: Iterable[Any]) -> str | None:
    return next((s for _, s in statuses if is_terminal(s)), None)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _percentile(values: list[float], percent: int) -> float | None:
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=100)[percent - 1]


def _round(value: float | None, digits: int = 1) -> float | None:
    return round(value, digits) if value is not None else None


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over runs of every number, the list of values of everything else."""
    good = [r for r in runs if r.get("ok")]
    if not good:
        return {"ok_runs": 0, "errors": [r.get("error") for r in runs]}
    return {"ok_runs": len(good), "of_runs": len(runs), **_merge(good)}


def _merge(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    if not present:
        return None
    if all(isinstance(v, dict) for v in present):
        keys = dict.fromkeys(k for v in present for k in v)
        return {k: _merge([v.get(k) for v in present]) for k in keys}
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return _round(statistics.median(present), 2)
    distinct = list(dict.fromkeys(json.dumps(v) for v in values))
    return json.loads(distinct[0]) if len(distinct) == 1 else [json.loads(d) for d in distinct]


def _pair(figures: dict[str, Any], key: str, fmt: str = "{:g}") -> str:
    """``door->indoor / indoor->door`` of one figure ("—" where a side has none)."""
    values = []
    for direction in ("door_to_indoor", "indoor_to_door"):
        value = (figures.get(direction) or {}).get(key)
        values.append("—" if value is None else fmt.format(value))
    return " / ".join(values)


def _stat(figures: dict[str, Any], path: str, field: str) -> str:
    """A receive statistic of both directions (``audio_receive_stats.concealed``, ...)."""
    values = []
    for direction in ("door_to_indoor", "indoor_to_door"):
        stats = (figures.get(direction) or {}).get("receive_stats") or {}
        value = (stats.get(path) or {}).get(field)
        values.append("—" if value is None else f"{value:g}")
    return " / ".join(values)


def _outcome(figures: dict[str, Any]) -> str:
    """How the call fared: survived, or how it ended; media back after an outage."""
    if figures.get("door_call_end_after_kill_s") is not None:
        ended = figures["door_call_end_after_kill_s"]
        return f"door ended {figures['door_end_status']} after {ended} s"
    parts = []
    for direction, side in (("indoor_to_door", "door"), ("door_to_indoor", "indoor")):
        fate = figures.get(direction) or {}
        if fate.get("ended_with"):
            after = fate.get("ended_after_event_s")
            when = f" {after} s after the event" if after is not None else ""
            parts.append(f"{side}: {fate['ended_with']}{when}")
        elif fate.get("audio_back_after_path_s") is not None:
            parts.append(
                f"{side}: audio back {fate['audio_back_after_path_s']} s, video "
                f"{fate.get('video_back_after_path_s')} s after the path"
            )
        if fate.get("reconnecting_after_s") is not None:
            parts.append(f"{side} RECONNECTING after {fate['reconnecting_after_s']} s")
    ends = dict.fromkeys(
        str((figures.get(d) or {}).get("end_status_after_hangup")) for d in FIGURE_SIDES
    )  # a list where the runs differ
    if not parts:
        parts.append(f"survived, hangup -> {' / '.join(ends)}")
    return "; ".join(parts)


FIGURE_SIDES = ("door_to_indoor", "indoor_to_door")
RECEIVE_PATH = (
    ("audio concealed", "audio_receive_stats.concealed", "delta"),
    ("FEC", "audio_receive_stats.recovered_fec", "delta"),
    ("playout delay ms", "audio_receive_stats.delay_ms", "median"),
    ("video NACK-recovered", "video_receive_counters.packets_recovered", "delta"),
    ("given up", "video_receive_counters.packets_given_up", "delta"),
    ("frames dropped", "video_receive_counters.frames_dropped", "delta"),
)
"""The receive-path figures of the table: counts in the window, delays as medians."""


def _receive_path(figures: dict[str, Any]) -> str:
    """The receive-path statistics the installed session reported, both directions."""
    cells = []
    for label, path, figure in RECEIVE_PATH:
        pair = _stat(figures, path, figure)
        if pair != "— / —":
            cells.append(f"{label} {pair}")
    return "; ".join(cells) or "—"


def markdown(report: dict[str, Any]) -> str:
    """The report as the table of docs/performance.md (each cell: door->indoor / indoor->door)."""
    lines = [
        "| profile | stack | runs ok | video fps median (worst s) | longest freeze ms "
        "| video latency ms median | audio missing ms | audio rel. delay ms median (p95) "
        "| receive path (when installed) | outcome |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, profile in report["profiles"].items():
        for stack in ("callbox", "bare"):
            figures = profile.get(stack)
            if not figures:
                continue
            if not figures.get("ok_runs"):
                lines.append(f"| {name} | {stack} | 0 | {figures.get('errors')} |||||||")
                continue
            fps = " / ".join(
                f"{(figures.get(d) or {}).get('video_fps_median', '—')} "
                f"({(figures.get(d) or {}).get('video_fps_worst', '—')})"
                for d in FIGURE_SIDES
            )
            delay = " / ".join(
                f"{(figures.get(d) or {}).get('audio_relative_delay_ms_median', '—')} "
                f"({(figures.get(d) or {}).get('audio_relative_delay_ms_p95', '—')})"
                for d in FIGURE_SIDES
            )
            receive_path = _receive_path(figures)
            lines.append(
                f"| {name} | {stack} | {figures['ok_runs']}/{figures['of_runs']} | {fps} "
                f"| {_pair(figures, 'video_longest_freeze_ms')} "
                f"| {_pair(figures, 'video_latency_ms_median')} "
                f"| {_pair(figures, 'audio_missing_ms')} | {delay} | {receive_path} "
                f"| {_outcome(figures)} |"
            )
    return "\n".join(lines)
