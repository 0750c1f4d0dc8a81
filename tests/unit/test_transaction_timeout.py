"""The TA job's Kafka transaction timeout against the broker and the checkpoint settings:
all the broker allows, and long enough that failed checkpoints make the
job fail over before the transactions a later checkpoint would commit can time out."""

from __future__ import annotations

import yaml
from dotenv import dotenv_values

from flink_job.settings import TaSettings
from torghut.k8s_render import BASE_DIR, K8S_DIR
from torghut.stack import kafka

KAFKA_DEFAULT_TRANSACTION_MAX_TIMEOUT_MS = 900_000  # Kafka's (and Strimzi's) default


def cluster_transaction_max_timeout_ms() -> int:
    """The broker limit the Kafka CR part in k8s/kafka-cluster/ states."""
    (cr,) = yaml.safe_load_all((K8S_DIR / "kafka-cluster" / "listeners.yaml").read_text())
    return int(cr["spec"]["kafka"]["config"]["transaction.max.timeout.ms"])


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
    assert k8s_settings().transaction_timeout_ms == cluster_transaction_max_timeout_ms()
    assert TaSettings().transaction_timeout_ms <= kafka.TRANSACTION_MAX_TIMEOUT_MS  # local


def s3_call_worst_ms(settings: TaSettings) -> int:
    """The longest one S3A call can take against a store that accepts and never answers:
    every S3A retry of every SDK attempt waits the socket timeout (backoffs aside)."""
    return (settings.s3_retry_limit + 1) * settings.s3_attempts * settings.s3_socket_timeout_ms


def test_failed_checkpoints_fail_the_job_over_before_their_transactions_time_out() -> None:
    # a completed checkpoint commits the transactions of the failed ones before it; the
    # job fails over (and replays instead) after tolerable + 1 counted failures in a row.
    # One failure lasts at most: interval and pause, the trigger's S3 call (it creates the
    # checkpoint's location; the checkpoint timeout does not cover it), the checkpoint
    # timeout, and the JobManager's _metadata write (not covered either)
    for settings in (TaSettings(), k8s_settings()):
        per_failure = (
            settings.checkpoint_interval_ms
            + settings.min_pause_between_checkpoints_ms
            + s3_call_worst_ms(settings)
            + settings.checkpoint_timeout_ms
            + s3_call_worst_ms(settings)
        )
        worst = (settings.tolerable_failed_checkpoints + 1) * per_failure
        assert worst < settings.transaction_timeout_ms, (worst, settings.transaction_timeout_ms)


def test_s3_calls_are_bounded_well_below_the_transaction_timeout() -> None:
    # Hadoop's defaults (200 s x 20 attempts x 8 tries) would let a checkpoint whose
    # _metadata write hangs complete hours later, after the broker aborted its transaction:
    # that loses the transaction's records (drilled with the scaled bounds in
    # test_ta_outages.py::test_minio_down_longer_than_the_transaction_timeout_...)
    for settings in (TaSettings(), k8s_settings()):
        assert 4 * s3_call_worst_ms(settings) < settings.transaction_timeout_ms
        assert settings.s3_socket_timeout_ms < 200_000
