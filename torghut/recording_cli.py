"""`torghut recording`: inspect and export the forwarder's frame recordings.

A recording (TORGHUT_FWD_RECORD_DIR, `torghut forwarder --record-dir`) holds every WebSocket
frame the forwarder read, byte for byte, with its receive time (docs/forwarder.md,
"Recording"). PATH is the recording's directory, one rec-*.tfr.zst segment, or a quoted
glob of segments.

Examples:
  torghut recording info .data/recordings
  torghut recording info '.data/recordings/rec-20250301T14*.tfr.zst' --json
  torghut recording export .data/recordings --jsonl /tmp/messages.jsonl
  torghut sim --replay .data/recordings --pace original --speed 10   # replay it
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from shared.recording import (
    RecordingError,
    RecordingSummary,
    decode_frame,
    iter_recording,
    summarize,
)
from torghut.sim.protocol import MARKET_DATA_TYPES, normalize_message
from torghut.sim.recording import JsonlRecorder
from torghut.sim.timestamps import TimestampFormatError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    info = sub.add_parser(
        "info",
        help="what a recording holds: segments, bytes, frames, messages by type, symbols, "
        "receive-time range, sessions, losses",
        description="Summarize a recording: segments and bytes, frames (text/binary, "
        "undecodable), Alpaca messages by type, symbols, first and last receive time, "
        "session markers (subscriptions, disconnects) and loss markers (frames that never "
        "reached the recording). A segment cut short (a crash) is read up to its last "
        "complete zstd frame and listed as a warning.",
    )
    info.add_argument("path", type=Path, metavar="PATH", help="directory, segment or glob")
    info.add_argument("--json", action="store_true", help="print the summary as JSON")
    info.add_argument(
        "--no-decode",
        action="store_true",
        help="do not decode frames (faster: no message counts or symbols)",
    )
    export = sub.add_parser(
        "export",
        help="write the recorded Alpaca messages as JSONL (t as RFC 3339), the format "
        "`torghut sim --replay` and the test oracles read",
        description="Write every market-data message of the recording's frames, in order, "
        "one JSON object per line with t as an RFC 3339 string: the simulator's "
        "JsonlRecorder format (torghut/sim/recording.py), so `torghut sim --replay`, "
        "read_jsonl and the oracles read it. Control messages (success, subscription, "
        "error), undecodable frames and messages whose t does not parse are left out and "
        "counted on stderr. Frame boundaries and receive times are not kept: replay the "
        "recording itself for those.",
    )
    export.add_argument("path", type=Path, metavar="PATH", help="directory, segment or glob")
    export.add_argument(
        "--jsonl", type=Path, required=True, metavar="OUT", help="the JSONL file to write"
    )


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "info":
            summary = summarize(args.path, decode=not args.no_decode)
            if args.json:
                print(orjson.dumps(summary.as_dict(), option=orjson.OPT_INDENT_2).decode())
            else:
                print(render(summary, args.path))
            return 0
        return export(args.path, args.jsonl)
    except RecordingError as exc:
        print(f"torghut recording: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"torghut recording: {exc}", file=sys.stderr)
        return 1


def _when(ns: int | None) -> str:
    if ns is None:
        return "-"
    seconds, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac // 1000:06d}Z"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def render(s: RecordingSummary, path: Path) -> str:
    meta = s.metadata
    span = (s.last_ns - s.first_ns) / 1e9 if s.first_ns is not None and s.last_ns else 0.0
    ratio = f", {s.frame_bytes / s.bytes:.1f}x" if s.bytes else ""
    lines = [
        f"recording {path}: {len(s.files)} segment(s), {_size(s.bytes)} on disk "
        f"({_size(s.frame_bytes)} of frames{ratio})",
        f"  source    {meta.get('url', '?')}  feed {meta.get('feed', '?')}  wire "
        f"{meta.get('wire_format', '?')}  symbols {','.join(meta.get('symbols', [])) or '?'}"
        f"  channels {','.join(meta.get('channels', [])) or '?'}",
        f"  started   {_when(meta.get('started_ns'))} (the writer's start; host "
        f"{meta.get('host', '?')})",
        f"  received  {_when(s.first_ns)} .. {_when(s.last_ns)} ({span:.3f} s)",
        f"  frames    {s.frames} (binary {s.binary_frames}, text {s.text_frames}, "
        f"undecodable {s.undecodable_frames})",
    ]
    if s.messages:
        by_type = ", ".join(f"{t} {n}" for t, n in s.messages.most_common())
        lines.append(f"  messages  {sum(s.messages.values())}: {by_type}")
        shown = sorted(s.symbols)
        more = f" (+{len(shown) - 20} more)" if len(shown) > 20 else ""
        lines.append(f"  symbols   {len(shown)}: {', '.join(shown[:20])}{more}")
    sessions = ", ".join(f"{e} {n}" for e, n in sorted(s.sessions.items())) or "none"
    lines.append(f"  sessions  {sessions}")
    lines.append(
        f"  lost      {s.lost_frames} frames ({s.loss_markers} loss markers)"
        + ("" if not s.loss_markers else ": the recording is incomplete there")
    )
    lines.extend(f"  warning   {w}" for w in s.warnings)
    lines.append("  files     " + "\n            ".join(str(p) for p in s.files))
    return "\n".join(lines)


def export(path: Path, out: Path) -> int:
    """Market-data messages of every frame, in order, as JSONL; counts to stderr."""
    rec = JsonlRecorder(out)
    skipped: Counter[str] = Counter()
    warnings: list[str] = []
    frames = 0
    try:
        for record in iter_recording(path, on_warning=warnings.append):
            if not record.is_frame:
                continue
            frames += 1
            try:
                items = decode_frame(record)
            except ValueError:
                skipped["undecodable frames"] += 1
                continue
            msgs: list[dict[str, Any]] = []
            for m in items:
                if not isinstance(m, dict) or m.get("T") not in MARKET_DATA_TYPES:
                    skipped["control or non-market messages"] += 1
                    continue
                try:
                    msgs.append(normalize_message(m))
                except (TimestampFormatError, TypeError):
                    skipped["messages with an unparsable t"] += 1
            try:
                rec.write(msgs)
            except TypeError:  # a value JSON cannot hold (msgpack bytes or ext types)
                skipped["frames with values JSON cannot hold"] += 1
    finally:
        rec.close()
    for w in warnings:
        print(f"torghut recording: warning: {w}", file=sys.stderr)
    left_out = "; ".join(f"{n} {what}" for what, n in skipped.items()) or "nothing"
    print(
        f"torghut recording: wrote {rec.count} messages of {frames} frames to {out} "
        f"(left out: {left_out})",
        file=sys.stderr,
    )
    return 0
