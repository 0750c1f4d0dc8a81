"""The minute check in tests: the simulator's minute bars onto torghut.bars.1m.v1, and the
TA job with a checker beside it until enough minutes are checked."""

from __future__ import annotations

import time

from forwarder.envelope import to_envelope
from shared.registry import SchemaRegistryClient
from shared.serde import AvroSerializer
from shared.topics import BARS_1M
from tests.support.ta_job import TaJobProcess
from torghut.barcheck.logic import Check
from torghut.barcheck.runner import BarChecker
from torghut.barcheck.settings import BarCheckSettings


def produce_vendor_bars(stack, sent: list[dict]) -> None:
    """The simulator's minute bars as the forwarder writes them to torghut.bars.1m.v1."""
    from confluent_kafka import Producer

    ser = AvroSerializer(SchemaRegistryClient(stack.registry_url), BARS_1M)
    p = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    for seq, msg in enumerate(sent, 1):
        env = to_envelope(msg, feed="test", seq=seq, ingest_ts=time.time_ns(), trace_id="")
        p.produce(BARS_1M.name, ser.encode(env), key=msg["S"].encode(), timestamp=msg["t"] // 10**6)
    assert p.flush(30) == 0


def run_checks(stack, unique, tmp_path, symbols: set[str], n: int) -> list[Check]:
    """Run the job over the log and the minute check beside it until `n` checks of
    `symbols`; return those checks."""
    job = TaJobProcess(
        stack,
        tmp_path,
        unique("cp-mc"),
        unique("tx-mc"),
        unique("grp-mc"),
        settings={"status_interval_ms": 300},
    )
    job.start()
    checker = BarChecker(
        BarCheckSettings(
            kafka_bootstrap=stack.kafka_bootstrap,
            registry_url=stack.registry_url,
            consumer_group=unique("mc"),
            from_beginning=True,
            http_port=0,
            produce=False,
            vendor_wait_s=5,
        )
    )
    try:
        deadline = time.monotonic() + 150
        while sum(c.symbol in symbols for c in checker.checks) < n:
            assert time.monotonic() < deadline, f"checks so far: {checker.checks}"
            assert job.alive(), f"job died; logs in {tmp_path}"
            checker.step(0.2)
    finally:
        checker.close()
        job.stop()
    return [c for c in checker.checks if c.symbol in symbols]
