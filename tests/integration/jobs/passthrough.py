"""A minimal exactly-once job for the foundation test: IN topic -> value reversed -> OUT topic.

Run as `python -m tests.integration.jobs.passthrough IN OUT`; settings from TORGHUT_TA_*.
"""

from __future__ import annotations

import sys

from flink_job.environment import create_environment
from flink_job.kafka_io import framed_sink, raw_bytes_source
from flink_job.settings import TaSettings
from shared.framing import frame_record


def main(in_topic: str, out_topic: str) -> None:
    from pyflink.common import Types, WatermarkStrategy

    settings = TaSettings()
    env = create_environment(settings)
    raw = Types.PRIMITIVE_ARRAY(Types.BYTE())
    stream = env.from_source(
        raw_bytes_source(settings, [in_topic]),
        WatermarkStrategy.no_watermarks(),
        "in",
        type_info=raw,
    )
    stream.map(lambda v: frame_record(out_topic, v[:1], bytes(v)[::-1]), output_type=raw).sink_to(
        framed_sink(settings)
    )
    env.execute("torghut-passthrough")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
