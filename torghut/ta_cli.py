"""`torghut ta`: run the TA job on a local MiniCluster against the local stack (or any
Kafka/registry/S3 given by TORGHUT_TA_* variables).

Development tooling: it fills endpoints from the local stack's state. The job itself
(`flink_job`) imports nothing from `torghut`; its cluster entry is `python -m flink_job`."""

from __future__ import annotations

import argparse
import os
import sys

from flink_job.settings import TaSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Settings come from TORGHUT_TA_* environment variables (see docs/flink-job.md); "
        "by default the Kafka, registry and S3 endpoints of the running local stack "
        "(`torghut stack up`) fill whatever is not set."
    )
    parser.add_argument(
        "--no-stack", action="store_true", help="do not read endpoints from the local stack state"
    )
    parser.add_argument("--checkpoint-interval-ms", type=int, help="override checkpoint interval")
    parser.add_argument(
        "--starting-offsets",
        choices=["committed-earliest", "committed-latest", "earliest", "latest"],
    )
    parser.add_argument("--transactional-id-prefix", help="unique per deployment")
    parser.add_argument(
        "--restore-latest",
        action="store_true",
        help="resume from the newest completed checkpoint in the checkpoint dir",
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the Flink config and exit"
    )


def settings_from_stack(base: dict[str, object]) -> dict[str, object]:
    from torghut.stack.state import StackState

    st = StackState.load()
    env_set = {k[len("TORGHUT_TA_") :].lower() for k in os.environ if k.startswith("TORGHUT_TA_")}
    defaults = {
        "kafka_bootstrap": st.kafka_bootstrap,
        "registry_url": st.registry_url,
        "s3_endpoint": st.s3_endpoint,
        "s3_access_key": st.s3_access_key,
        "s3_secret_key": st.s3_secret_key,
        "checkpoint_dir": f"s3a://{st.s3_bucket}/torghut-ta/checkpoints",
    }
    return {**{k: v for k, v in defaults.items() if k not in env_set}, **base}


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {}
    if args.checkpoint_interval_ms:
        overrides["checkpoint_interval_ms"] = args.checkpoint_interval_ms
    if args.starting_offsets:
        overrides["starting_offsets"] = args.starting_offsets
    if args.transactional_id_prefix:
        overrides["transactional_id_prefix"] = args.transactional_id_prefix
    if not args.no_stack:
        overrides = settings_from_stack(overrides)
    settings = TaSettings(**overrides)  # type: ignore[arg-type]
    if args.print_config:
        from flink_job.environment import flink_config

        for k, v in sorted(flink_config(settings).items()):
            print(f"{k}: {'***' if 'secret' in k else v}")
        return 0
    restore_from = None
    if args.restore_latest:
        from flink_job.restore import latest_checkpoint

        restore_from = latest_checkpoint(settings)
        print(
            f"[ta] restoring from {restore_from or 'nothing (no checkpoint yet)'}", file=sys.stderr
        )
    from flink_job.job import main

    print(
        f"[ta] job {settings.job_name}: kafka {settings.kafka_bootstrap}, checkpoints "
        f"{settings.checkpoint_dir} every {settings.checkpoint_interval_ms} ms",
        file=sys.stderr,
    )
    main(local=True, settings=settings, restore_from=restore_from)
    return 0
