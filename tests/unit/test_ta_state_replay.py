"""The keyed function's snapshot + log state restores exactly.

`SymbolTaFunction` runs here against an in-memory stand-in of PyFlink's keyed state and
timer service with Flink's restore semantics: at a checkpoint the keyed state, the timers
and the input position are copied; a crash throws away the function (its per-key cache)
and everything emitted after the checkpoint, restores the copies and replays the input
from the checkpointed position. The final bars and signals must equal those of a run that
never crashed, field for field, with compactions both at bar closes and at `state_log_max`.
The same drill against the real engines (Flink, Kafka, MinIO, `kill -9`) is
`tests/integration/test_ta_job.py`.
"""

from __future__ import annotations

import random

import pytest

import flink_job.functions as functions
from flink_job.functions import frame_batch, iter_batch
from shared.framing import unframe_record
from shared.serde import AvroDeserializer, AvroSerializer
from shared.topics import TA_BARS_1S, TA_SIGNALS, TRADES
from tests.support.registry import InMemoryRegistry
from tests.support.ta_harness import (
    BOUND_MS,
    NO_MARK,
    SYMBOLS,
    T0,
    Harness,
    S,
    decoded_outputs,
    is_final,
    mixed_stream,
    raw_envelopes,
)


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("log_max", [512, 7])
@pytest.mark.parametrize("seed", [1, 2])
def test_restores_from_snapshot_plus_log_give_the_outputs_of_an_uninterrupted_run(
    monkeypatch: pytest.MonkeyPatch, log_max: int, seed: int, batch: int
) -> None:
    reg = InMemoryRegistry()
    monkeypatch.setattr(functions, "SchemaRegistryClient", lambda url, **_: reg)
    stream = mixed_stream(seed)
    raw = raw_envelopes(stream, reg)
    records = [(sym, k, ts, data) for (k, ts, sym, _f), data in zip(stream, raw, strict=True)]

    straight = Harness(reg, log_max)
    for i in range(0, len(records), batch):
        straight.feed(records[i : i + batch])
    straight.advance(1 << 62)

    rng = random.Random(seed)
    crashy = Harness(reg, log_max)
    i, cp, restores, cp_at = 0, None, 0, 0
    while i < len(records):
        # checkpoints fall between flushes: the operator flushes before every barrier
        if i and i % (97 * batch) < batch and cp_at != i:
            cp, cp_at = (*crashy.checkpoint(), i), i
        if cp is not None and rng.random() < 0.05 and restores < 8:
            crashy.restore(cp[:5])
            i = cp_at = cp[5]
            restores += 1
            continue
        crashy.feed(records[i : i + batch])
        i += batch
    crashy.advance(1 << 62)

    assert restores >= 3
    expected = decoded_outputs(straight.out, reg)
    assert {t for t, _ in expected} == {TA_BARS_1S.name, TA_SIGNALS.name}
    assert len(expected) > 200
    assert decoded_outputs(crashy.out, reg) == expected


def test_batch_framing_round_trips_and_a_torn_batch_is_refused() -> None:
    records = [(NO_MARK, b""), (1_767_364_200_123, b"a"), (-5, bytes(range(256)) * 3)]
    assert list(iter_batch(frame_batch(records))) == records
    with pytest.raises(functions.BatchFramingError, match="runs past its end"):
        list(iter_batch(frame_batch(records)[:-1]))


def test_a_legacy_log_entry_replays_with_its_watermark_as_every_record_mark() -> None:
    legacy = (1234).to_bytes(8, "big", signed=True) + b"".join(
        len(r).to_bytes(4, "big") + r for r in (b"x", b"yz")
    )
    assert list(functions.iter_log_entry(legacy)) == [(1234, 1234, b"x"), (1234, 1234, b"yz")]
    v2 = functions.log_entry(99, frame_batch([(7, b"x")]))
    assert list(functions.iter_log_entry(v2)) == [(7, 99, b"x")]


def _late_heavy_stream(seed: int) -> list[tuple[str, int, str, tuple]]:
    """`_stream` plus trades 2-6 s late and a sparse symbol's lone late trades: the records
    whose fate a wall-clock watermark decides differently at different speeds."""
    rng = random.Random(seed)
    out = mixed_stream(seed)
    for i in range(300, len(out), 23):
        sym = SYMBOLS[rng.randrange(3)]
        ts = out[i][1] - rng.randrange(2 * S, 6 * S)
        out.insert(i, ("t", ts, sym, (100.0 + rng.random(), 1.0, 10_000 + i)))
    for i in range(100, len(out), 157):  # SPRS trades ~2 s behind the feed, alone in their second
        out.insert(i, ("t", out[i][1] - 2 * S - 500_000_000, "SPRS", (50.0, 2.0, 20_000 + i)))
    return out


@pytest.mark.parametrize("seed", [3, 4])
def test_final_output_is_the_same_whatever_the_watermark_timing_and_batching(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """The property behind docs/design.md "Event time": lateness follows the partition
    marks stamped on the records, so a watermark emitted after every flush, one lagging
    many flushes behind, and different batch sizes give the same final bars and signals."""
    reg = InMemoryRegistry()
    monkeypatch.setattr(functions, "SchemaRegistryClient", lambda url, **_: reg)
    stream = _late_heavy_stream(seed)
    raw = raw_envelopes(stream, reg)
    records = [(sym, k, ts, data) for (k, ts, sym, _f), data in zip(stream, raw, strict=True)]
    runs = []
    for batch, wm_every in ((1, 1), (7, 1), (1, 40), (13, 300)):
        h = Harness(reg, 512, wm_every=wm_every)
        for i in range(0, len(records), batch):
            h.feed(records[i : i + batch])
        h.advance(1 << 62)
        # emission order across symbols follows the watermark; per symbol it is start order
        runs.append(sorted((f for f in decoded_outputs(h.out, reg) if is_final(f)), key=repr))
    late = sum(h.fn.cache[s].sym.counters.late for s in h.fn.cache)
    assert late > 20, "the stream must hold trades that are late by their partition mark"
    assert len(runs[0]) > 200
    for other in runs[1:]:
        assert other == runs[0]


def _with_gap_markers(
    stream: list[tuple[str, int, str, tuple]],
) -> list[tuple[str, int, str, tuple]]:
    """`stream` plus two reconnect gaps, a marker per symbol each, written the way the
    forwarder does (record timestamp = the highest event time so far): one soon after its
    window [9.6 s, 10.4 s], and one whose window [15.5 s, 20.2 s] starts in bars its
    partition's mark has already passed (those may be final: never flagged)."""
    out: list[tuple[str, int, str, tuple]] = []
    windows = {
        300: (T0 + 9_600_000_000, T0 + 10_400_000_000),
        600: (T0 + 15_500_000_000, T0 + 20_200_000_000),
    }
    high = 0
    for i, rec in enumerate(stream):
        if i in windows:
            for sym in SYMBOLS:
                out.append(("g", high, sym, windows[i]))
        out.append(rec)
        high = max(high, rec[1])
    return out


def _raw_with_gaps(stream, reg: InMemoryRegistry) -> list[bytes]:
    from forwarder.envelope import gap_envelope

    trades = AvroSerializer(reg, TRADES)  # type: ignore[arg-type]
    plain = iter(raw_envelopes([r for r in stream if r[0] != "g"], reg))
    out = []
    for n, (kind, ts, sym, f) in enumerate(stream):
        if kind != "g":
            out.append(next(plain))
            continue
        rec = gap_envelope(
            sym, feed="iex", seq=n, from_ns=f[0], to_ns=f[1], event_ts=ts, trace_id=f"gap{n}"
        )
        out.append(trades.encode(rec))
    return out


@pytest.mark.parametrize("seed", [3, 4])
def test_gap_flags_equal_the_oracle_at_any_watermark_timing_and_across_restores(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Gap markers in the log (docs/design.md, "Gaps"): the final bars overlapping a gap
    window carry `gap`, except those the marker's partition mark had passed; the same flags
    whatever the watermark timing and batching, after crashes and restores, and equal to the
    batch oracle of the log (tests/support/oracle.py)."""
    from tests.support.oracle import LogRecord, expected_output

    reg = InMemoryRegistry()
    monkeypatch.setattr(functions, "SchemaRegistryClient", lambda url, **_: reg)
    stream = _with_gap_markers(_late_heavy_stream(seed))
    raw = _raw_with_gaps(stream, reg)
    part = {"t": "t", "g": "t", "q": "q"}  # gap markers go to the trades partition
    records = [(sym, part[k], ts, data) for (k, ts, sym, _f), data in zip(stream, raw, strict=True)]
    deser = AvroDeserializer(reg)  # type: ignore[arg-type]
    offsets: dict[str, int] = {}
    log = []
    for _sym, p, ts, data in records:
        offsets[p] = offsets.get(p, -1) + 1
        log.append(LogRecord(p, offsets[p], ts // 1_000_000, deser.decode(data)))
    oracle = expected_output(log, bound_ms=BOUND_MS)
    assert oracle.gap_markers == 6 and oracle.late_gap_markers == 3
    flagged_by_oracle = {(s, start) for s, start in oracle.gap_bars}
    assert len(flagged_by_oracle) >= 9, "both windows must flag bars"

    runs = []
    for batch, wm_every in ((1, 1), (13, 300), (7, 1)):
        h = Harness(reg, 7 if batch == 7 else 512, wm_every=wm_every)
        i, cp, restores = 0, None, 0
        while i < len(records):
            if batch == 7 and i and i % (40 * batch) == 0:
                if cp is not None and cp[1] == i - 40 * batch and restores < 8:
                    h.restore(cp[0])  # a crash: back to the last checkpoint, replay from it
                    i, cp, restores = cp[1], None, restores + 1
                cp = (h.checkpoint(), i)
            h.feed(records[i : i + batch])
            i += batch
        assert batch != 7 or restores >= 5
        h.advance(1 << 62)
        finals = [dict(f[1]) for f in decoded_outputs(h.out, reg) if is_final(f)]
        bars = {(r["symbol"], _start_ns(r)): r["gap"] for r in finals if "trade_count" in r}
        runs.append(bars)
        signals = {(r["symbol"], _start_ns(r)): r["gap"] for r in finals if "rsi14" in r}
        assert signals == bars  # each bar's signal carries the bar's flag
        in_oracle = {k: v for k, v in bars.items() if k in oracle.bars}
        assert len(in_oracle) == len(oracle.bars)
        assert {k for k, v in in_oracle.items() if v} == flagged_by_oracle
        # reported on ta.status.v1: every marker, and the late ones
        h.fn.watermark_ms = None  # past the end of time after the final advance
        _topic, _key, value = unframe_record(h.fn._status_frame(0))
        status = deser.decode(value)
        assert (status["gap_markers"], status["late_gap_markers"]) == (6, 3)
    assert runs[1] == runs[0] and runs[2] == runs[0]


def _start_ns(r: dict) -> int:
    import datetime

    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return (r["window"]["start"] - epoch) // datetime.timedelta(microseconds=1) * 1000
