"""Find the newest completed checkpoint under a checkpoint dir, to restart a local job from.

(In Kubernetes the operator does this itself: upgradeMode last-state/savepoint.)
"""

from __future__ import annotations

from flink_job.settings import TaSettings


def latest_checkpoint(settings: TaSettings) -> str | None:
    """`s3a://bucket/.../<job-id>/chk-N` of the newest `_metadata`, or None."""
    from minio import Minio

    if not settings.checkpoint_dir.startswith("s3a://"):
        raise ValueError(f"checkpoint_dir {settings.checkpoint_dir!r} is not s3a://bucket/path")
    bucket, _, prefix = settings.checkpoint_dir[len("s3a://") :].partition("/")
    endpoint = settings.s3_endpoint
    s3 = Minio(
        endpoint.split("://", 1)[-1],
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key.get_secret_value(),
        secure=endpoint.startswith("https"),
    )
    newest = None
    for obj in s3.list_objects(bucket, prefix=prefix.rstrip("/") + "/", recursive=True):
        name = obj.object_name
        if (
            name.endswith("/_metadata")
            and "/chk-" in name
            and (newest is None or obj.last_modified > newest[0])
        ):
            newest = (obj.last_modified, name)
    if newest is None:
        return None
    return f"s3a://{bucket}/{newest[1].rsplit('/', 1)[0]}"
