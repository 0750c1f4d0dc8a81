"""The one launcher of the pipeline's own processes (forwarder, TA job, simulator).

`torghut run`, the benchmarks and the tests start every local process through here: the
environment of a service is rendered from its settings class (`ForwarderSettings`,
`TaSettings`), so a misspelt or unknown setting is an error at the launch site naming the
nearest valid one — never a variable the child silently ignores — and every value is
validated by the class before the child starts.
"""

from __future__ import annotations

import difflib
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings

from shared.settings import SettingsError
from torghut.stack import procs
from torghut.stack.state import StackState

FORWARDER = (sys.executable, "-m", "forwarder")
TA_JOB = (sys.executable, "-m", "torghut.cli", "ta", "--no-stack")
SIM = (sys.executable, "-m", "torghut.cli", "sim")
CHECK_BARS = (sys.executable, "-m", "torghut.cli", "check-bars")
CANARY = (sys.executable, "-m", "torghut.cli", "canary")


def _env_value(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_env(settings_cls: type[BaseSettings], values: Mapping[str, Any]) -> dict[str, str]:
    """`<PREFIX><FIELD>` variables for `values` (field name -> value), validated by
    `settings_cls` first: an unknown field is a `SettingsError` naming the nearest one."""
    fields = settings_cls.model_fields
    prefix = str(settings_cls.model_config.get("env_prefix") or "")
    unknown = [k for k in values if k not in fields]
    if unknown:
        hints = []
        for k in unknown:
            near = difflib.get_close_matches(k, list(fields), n=1)
            hints.append(f"{k!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
        raise SettingsError(
            f"{settings_cls.__name__} has no setting {', '.join(hints)}; see its field list"
        )
    settings_cls(**values)  # validation only: the child builds its own from the environment
    return {prefix + k.upper(): _env_value(v) for k, v in values.items()}


def ta_job_env(stack: StackState, **values: Any) -> dict[str, str]:
    """The TA job's environment against the local `stack` (its endpoints, its bucket)."""
    from flink_job.settings import TaSettings

    base: dict[str, Any] = {
        "kafka_bootstrap": stack.kafka_bootstrap,
        "registry_url": stack.registry_url,
        "s3_endpoint": stack.s3_endpoint,
        "s3_access_key": stack.s3_access_key,
        "s3_secret_key": stack.s3_secret_key,
        "checkpoint_dir": f"s3a://{stack.s3_bucket}/torghut-ta/checkpoints",
    }
    return render_env(TaSettings, {**base, **values})


def forwarder_env(stack: StackState, alpaca_url: str, **values: Any) -> dict[str, str]:
    """The forwarder's environment against the local `stack`, reading `alpaca_url`."""
    from forwarder.settings import ForwarderSettings

    base: dict[str, Any] = {
        "alpaca_url": alpaca_url,
        "alpaca_key_id": "local",
        "alpaca_secret_key": "local-secret",
        "kafka_bootstrap": stack.kafka_bootstrap,
        "registry_url": stack.registry_url,
    }
    return render_env(ForwarderSettings, {**base, **values})


def bar_check_env(stack: StackState, **values: Any) -> dict[str, str]:
    """The minute check's environment (`torghut check-bars`) against the local `stack`."""
    from torghut.barcheck.settings import BarCheckSettings

    base: dict[str, Any] = {
        "kafka_bootstrap": stack.kafka_bootstrap,
        "registry_url": stack.registry_url,
    }
    return render_env(BarCheckSettings, {**base, **values})


def canary_env(stack: StackState, **values: Any) -> dict[str, str]:
    """The canary's environment (`torghut canary`) against the local `stack`."""
    from torghut.canary.settings import CanarySettings

    base: dict[str, Any] = {
        "kafka_bootstrap": stack.kafka_bootstrap,
        "registry_url": stack.registry_url,
    }
    return render_env(CanarySettings, {**base, **values})


def launch(
    argv: Sequence[str],
    env: Mapping[str, str],
    log_file: Path,
    cwd: Path | None = None,
    die_with_parent: bool = True,
) -> subprocess.Popen:
    """Start `argv` with the inherited environment plus `env`, output to `log_file`, in a
    process group of its own (so a stop reaches its children). With `die_with_parent` the
    kernel kills it when the launching thread dies, even by `kill -9` (PR_SET_PDEATHSIG:
    call it from the thread that lives as long as the child should)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        return subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
            cwd=str(cwd) if cwd else None,
            start_new_session=not die_with_parent,
            preexec_fn=procs.die_with_parent if die_with_parent else None,
        )
