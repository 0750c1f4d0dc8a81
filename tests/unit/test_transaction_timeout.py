"""The TA job's Kafka transaction timeout against the broker and the checkpoint settings
(issue 13 item 2): all the broker allows, and long enough that failed checkpoints make the
job fail over before the transactions a later checkpoint would commit can time out."""

from __future__ import annotations

from dotenv import dotenv_values

from flink_job.settings import TaSettings
from torghut.k8s_render import BASE_DIR
from torghut.stack import kafka

KAFKA_DEFAULT_TRANSACTION_MAX_TIMEOUT_MS = 900_000  # Kafka's (and Strimzi's) default


def k8s_settings() -> TaSettings:
    """The job's settings as the base manifests set them (`k8s/base/flink/ta.env`)."""
    env = {
        k.removeprefix("TORGHUT_TA_").lower(): v
        for k, v in dotenv_values(BASE_DIR / "flink" / "ta.env").items()
    }
    return TaSettings(**env)


def test_the_job_uses_all_the_transaction_time_kafkas_default_broker_allows() -> None:
    # above the broker's transaction.max.timeout.ms, InitProducerId fails and the job cannot
    # start; below it, a Kafka outage between the two loses a checkpoint's records
    assert TaSettings().transaction_timeout_ms == KAFKA_DEFAULT_TRANSACTION_MAX_TIMEOUT_MS
    assert k8s_settings().transaction_timeout_ms == KAFKA_DEFAULT_TRANSACTION_MAX_TIMEOUT_MS
    assert TaSettings().transaction_timeout_ms <= kafka.TRANSACTION_MAX_TIMEOUT_MS  # local


def test_failed_checkpoints_fail_the_job_over_before_their_transactions_time_out() -> None:
    # a completed checkpoint commits the transactions of the failed ones before it; the
    # job fails over (and replays instead) after tolerable + 1 counted failures in a row.
    # (A hanging checkpoint store stalls the trigger instead, so failures stop counting;
    # then the broker's abort at the timeout fails the writer: test_ta_outages.py)
    for settings in (TaSettings(), k8s_settings()):
        per_failure = (
            settings.checkpoint_timeout_ms
            + settings.min_pause_between_checkpoints_ms
            + settings.checkpoint_interval_ms
        )
        worst = (settings.tolerable_failed_checkpoints + 1) * per_failure
        assert worst < settings.transaction_timeout_ms, (worst, settings.transaction_timeout_ms)
