"""`torghut flink-cluster`: the TA job on a real standalone Flink cluster on loopback.

One JobManager and N TaskManagers, each its own JVM started by the distribution's own
scripts (`standalone-job.sh`, `taskmanager.sh` from the installed `apache-flink` wheel, i.e.
`pyflink/bin`), each TaskManager running the job's Python in its own embedded interpreter
(thread mode, as the FlinkDeployment). What it mirrors of the operator deployment:

- the Flink settings: `config.yaml` is `flink_job.environment.flink_config` (the generator
  the FlinkDeployment is checked against) over the distribution's own `config.yaml`, plus
  the cluster's addresses, ports, slots and memory;
- application mode: the JobManager runs `org.apache.flink.client.python.PythonDriver` from
  the `flink-python` jar with `-pyclientexec <python> -pym flink_job`, exactly the
  FlinkDeployment's `job` (jarURI + entryClass + args); the JobManager itself restarts the
  job from its latest checkpoint when a TaskManager is lost;
- `lib/` holds what the image's `/opt/flink/lib` holds (the distribution's jars + the
  Kafka connector and glue jars), `plugins/` the S3 filesystem as a real plugin
  (`s3-fs-hadoop/`, own classloader) and the Prometheus reporter;
- S3 credentials reach the processes as `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (the
  S3A default provider chain), as in the pods; `config.yaml` holds no key.

HA is an option (`FlinkCluster(ha=ZooKeeperHA(...))`, off by default): Flink's ZooKeeper HA
services against a real ZooKeeper server on loopback (`torghut.stack.zookeeper`), the HA
metadata (job graph, checkpoint pointers) in `high-availability.storageDir` beside the
checkpoints on the same MinIO, as the FlinkDeployment keeps it beside them with Kubernetes HA.
Leader election and retrieval go through ZooKeeper instead of ConfigMaps; the rest is Flink's
own HA code path: a new JobManager (`replace_jobmanager(None)`) recovers the job with the
same job id (application mode under HA fixes it from `high-availability.cluster-id`:
`ha_job_id`) from its latest completed checkpoint, and running TaskManagers find the new
leader through ZooKeeper and stay. Without HA (the default) a JobManager crash loses the job;
`replace_jobmanager` starts a new one on the same ports restoring the checkpoint it is given,
under a new job id, and the TaskManagers are restarted with it (`restart_taskmanagers`: a
TaskManager JVM that ran the thread-mode Python of the old job cannot start it for another
job, see `replace_jobmanager`).

Not mirrored: the operator itself (savepoint upgrades, periodic savepoints), TaskManager
replacement (the caller starts one: `start_taskmanager`), pod resources, and SASL/TLS to
Kafka unless the settings ask for it.

Every process is started through `torghut.stack.apps.launch`: a process group of its own,
and, unless detached, SIGKILL when the starting thread dies (PR_SET_PDEATHSIG), so nothing
outlives a test, a failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torghut.stack import apps, procs
from torghut.stack.paths import FLINK_LIB, FLINK_PLUGINS, REPO_ROOT, STACK_HOME

PYTHON_DRIVER = "org.apache.flink.client.python.PythonDriver"
STATE_FILE = "flink-cluster.json"
# keys the pods never get from the config: their S3 keys come from the env (Secret)
_SECRET_KEYS = ("s3.access-key", "s3.secret-key")


class FlinkClusterError(RuntimeError):
    """The cluster could not be prepared or did not come up; the message says where to look."""


@dataclass(frozen=True)
class ZooKeeperHA:
    """Flink's ZooKeeper HA for the cluster: `quorum` is the ZooKeeper connect string
    (`torghut.stack.zookeeper.ZooKeeperServer.connect_string`), `cluster_id` the cluster's
    node under ZooKeeper's `/flink` and under `storage_dir` (the operator sets it to the
    FlinkDeployment's name; it also fixes the job id: `ha_job_id`). `storage_dir` default:
    `ha` beside the checkpoint dir (`s3a://.../torghut-ta/checkpoints` ->
    `s3a://.../torghut-ta/ha`, as the FlinkDeployment). `session_timeout`: how long ZooKeeper
    keeps a dead JobManager's session, and so its leadership: the new JobManager is elected
    after it (Kubernetes HA's lease duration, default 15 s, plays that part)."""

    quorum: str
    cluster_id: str = "/torghut-ta"
    storage_dir: str | None = None
    session_timeout: str = "15 s"

    def config(self, checkpoint_dir: str) -> dict[str, str]:
        storage = self.storage_dir or checkpoint_dir.rstrip("/").rsplit("/", 1)[0] + "/ha"
        return {
            "high-availability.type": "zookeeper",
            "high-availability.zookeeper.quorum": self.quorum,
            "high-availability.cluster-id": self.cluster_id,
            "high-availability.storageDir": storage,
            "high-availability.zookeeper.client.session-timeout": self.session_timeout,
        }


def ha_job_id(cluster_id: str) -> str:
    """The job id application mode gives the job under HA when none is set
    (`$internal.pipeline.job-id`): `new JobID(clusterId.hashCode(), 0)`, Flink 1.20's
    `ApplicationDispatcherBootstrap.fixJobIdAndRunApplicationAsync`. Every JobManager of the
    cluster submits the same id, so a new one recovers the job instead of starting another."""
    h = 0
    for unit in _utf16_units(cluster_id):
        h = (31 * h + unit) & 0xFFFFFFFF
    lower = h - (1 << 32) if h & 0x80000000 else h  # Java's int, widened to long (i2l)
    return f"{lower & 0xFFFFFFFFFFFFFFFF:016x}{0:016x}"


def _utf16_units(text: str) -> list[int]:
    raw = text.encode("utf-16-be")
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


def flink_home() -> Path:
    import pyflink

    return Path(pyflink.__file__).resolve().parent


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, bool):
        out[prefix] = "true" if value else "false"
    else:
        out[prefix] = str(value)


def distribution_config() -> dict[str, str]:
    """The wheel's own `conf/config.yaml`, flattened (its Java 17 `--add-opens` among it)."""
    import yaml

    raw = yaml.safe_load((flink_home() / "conf" / "config.yaml").read_text()) or {}
    out: dict[str, str] = {}
    _flatten("", raw, out)
    return out


def cluster_config(
    settings: Any,
    run_dir: Path,
    rest_port: int,
    rpc_port: int,
    slots: int = 1,
    taskmanager_memory: str = "1728m",
    jobmanager_memory: str = "1024m",
    heartbeat_interval: str = "2 s",
) -> dict[str, str]:
    """The cluster's `config.yaml` keys: distribution defaults < the job's settings
    (`flink_config`, the FlinkDeployment's source) < this cluster's loopback addresses."""
    from flink_job.environment import PROMETHEUS_REPORTER, flink_config

    cfg = distribution_config()
    cfg.update(flink_config(settings))
    for key in _SECRET_KEYS:
        cfg.pop(key, None)
    cfg.update(
        {
            "jobmanager.rpc.address": "127.0.0.1",
            "jobmanager.rpc.port": str(rpc_port),
            "jobmanager.bind-host": "127.0.0.1",
            "jobmanager.memory.process.size": jobmanager_memory,
            "taskmanager.host": "127.0.0.1",
            "taskmanager.bind-host": "127.0.0.1",
            "taskmanager.numberOfTaskSlots": str(slots),
            "taskmanager.memory.process.size": taskmanager_memory,
            "rest.address": "127.0.0.1",
            "rest.bind-address": "127.0.0.1",
            "rest.port": str(rest_port),
            "env.log.dir": str(run_dir / "log"),
            "env.pid.dir": str(run_dir / "pid"),
            "io.tmp.dirs": str(run_dir / "tmp"),
            "user.artifacts.base-dir": str(run_dir / "artifacts"),
            # a standalone ResourceManager learns that a TaskManager died only from failed
            # heartbeat RPCs (2 in a row); in Kubernetes the pod watch tells it at once.
            # Default 10 s: restarts meanwhile keep deploying into the dead one's slot
            "heartbeat.interval": heartbeat_interval,
            # each process gets its own port as a dynamic property (-D) at launch
            "metrics.reporter.prom.factory.class": PROMETHEUS_REPORTER,
            # the JobManager stays up once the job has ended (stop-with-savepoint): its
            # REST API still reports the savepoint's path and the job's final state
            "execution.shutdown-on-application-finish": "false",
        }
    )
    return cfg


def _link_dir(target_dir: Path, wanted: Mapping[str, Path]) -> None:
    target_dir.mkdir(parents=True, exist_ok=True)
    for stale in target_dir.iterdir():
        if stale.name not in wanted:
            stale.unlink()
    for name, src in wanted.items():
        link = target_dir / name
        if link.is_symlink() or link.exists():
            if link.resolve() == src.resolve():
                continue
            link.unlink()
        link.symlink_to(src)


def prepare_distribution(run_dir: Path) -> tuple[Path, Path]:
    """`lib/` (as the image's /opt/flink/lib) and `plugins/` (S3 filesystem + Prometheus
    reporter, each in a folder of its own) under `run_dir`, as symlinks."""
    home = flink_home()
    connector = sorted(FLINK_LIB.glob("*.jar"))
    if not any(j.name.startswith("flink-connector-kafka") for j in connector):
        raise FlinkClusterError(f"Kafka connector missing in {FLINK_LIB}; run `make setup`")
    s3 = sorted((FLINK_PLUGINS / "s3-fs-hadoop").glob("*.jar"))
    if not s3:
        raise FlinkClusterError(f"flink-s3-fs-hadoop missing in {FLINK_PLUGINS}; run `make setup`")
    lib = run_dir / "lib"
    _link_dir(lib, {j.name: j for j in [*(home / "lib").glob("*.jar"), *connector]})
    plugins = run_dir / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    _link_dir(plugins / "s3-fs-hadoop", {j.name: j for j in s3})
    prom = sorted((home / "plugins" / "metrics-prometheus").glob("*.jar"))
    _link_dir(plugins / "metrics-prometheus", {j.name: j for j in prom})
    return lib, plugins


def write_conf_dir(conf_dir: Path, cfg: Mapping[str, str]) -> Path:
    """FLINK_CONF_DIR: `config.yaml` (flat keys), the distribution's log4j files and, for
    the daemons, the JSON log configuration (`flink_job.environment.local_log4j_properties`)."""
    import yaml

    from flink_job.environment import local_log4j_properties

    conf_dir.mkdir(parents=True, exist_ok=True)
    for name in ("log4j-console.properties", "log4j-cli.properties", "log4j.properties"):
        (conf_dir / name).write_bytes((flink_home() / "conf" / name).read_bytes())
    # the daemons (start-foreground: log4j-console.properties): their text log and console as
    # before, plus the same lines as JSON next to the text log (<log.file>.jsonl,
    # flink_job/log4j-json.properties) when the layout jar is built
    for name in ("log4j-console.properties", "log4j.properties"):
        local_log4j_properties(flink_home() / "conf" / name, conf_dir / name)
    text = "# generated by torghut.flink_cluster from flink_job.environment.flink_config\n"
    text += yaml.safe_dump(dict(sorted(cfg.items())), default_flow_style=False, width=10_000)
    (conf_dir / "config.yaml").write_text(text)
    return conf_dir


@dataclass
class FlinkProcess:
    """One JVM of the cluster (its process group id is its pid)."""

    name: str
    proc: subprocess.Popen | None
    pid: int
    log_file: Path
    metrics_port: int

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return procs.alive(self.pid)

    def kill9(self) -> None:
        """`kill -9` of the whole process group (the JVM and anything it started)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(30)


@dataclass
class FlinkCluster:
    """A standalone Flink cluster running the TA job in application mode.

    `ta_values` are `TaSettings` fields (validated, rendered to `TORGHUT_TA_*` for the job
    and to `config.yaml` through `flink_config`). `die_with_parent=False` detaches the
    processes (for `torghut flink-cluster up --detach`; stop them with `down`). `ha`: Flink's
    ZooKeeper HA (module docstring); `flink_overrides`: `config.yaml` keys over everything
    else (e.g. the FlinkDeployment's `taskmanager.slot.timeout`). Each TaskManager's resource
    id is its process name (`taskmanager-<n>`), so REST names the JVM a task runs in.
    """

    run_dir: Path
    ta_values: Mapping[str, Any]
    taskmanagers: int = 2
    slots: int = 1
    die_with_parent: bool = True
    taskmanager_memory: str = "1728m"
    ha: ZooKeeperHA | None = None
    flink_overrides: Mapping[str, str] = field(default_factory=dict)
    rest_port: int = 0
    rpc_port: int = 0
    jobmanager: FlinkProcess | None = None
    workers: list[FlinkProcess] = field(default_factory=list)
    # JobManagers replaced by `replace_jobmanager` (dead; `stop` still reaps their groups)
    retired: list[FlinkProcess] = field(default_factory=list)
    _started: int = 0

    def __post_init__(self) -> None:
        from flink_job.settings import TaSettings

        self.run_dir = Path(self.run_dir).resolve()
        values = dict(self.ta_values)
        self.settings = TaSettings(**values)
        # like the pods: S3 keys as AWS_* env for the S3A provider chain, not TORGHUT_TA_*
        # (read from the settings: they may come from the caller's environment too)
        values.pop("s3_access_key", None)
        values.pop("s3_secret_key", None)
        self.s3_access_key = self.settings.s3_access_key
        self.s3_secret_key = self.settings.s3_secret_key.get_secret_value()
        self.job_env = apps.render_env(TaSettings, values)
        self.rest_port = self.rest_port or procs.free_port()
        self.rpc_port = self.rpc_port or procs.free_port()

    # --- layout -------------------------------------------------------------------------
    @property
    def conf_dir(self) -> Path:
        return self.run_dir / "conf"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "log"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def config(self) -> dict[str, str]:
        cfg = cluster_config(
            self.settings,
            self.run_dir,
            self.rest_port,
            self.rpc_port,
            slots=self.slots,
            taskmanager_memory=self.taskmanager_memory,
        )
        if self.ha is not None:
            cfg.update(self.ha.config(self.settings.checkpoint_dir))
        cfg.update({k: str(v) for k, v in self.flink_overrides.items()})
        return cfg

    def prepare(self) -> None:
        for sub in ("log", "pid", "tmp"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        self.lib_dir, self.plugins_dir = prepare_distribution(self.run_dir)
        write_conf_dir(self.conf_dir, self.config())

    def process_env(self, ident: str) -> dict[str, str]:
        home = flink_home()
        # thread mode embeds CPython in the TaskManager JVM (pemja): it must see the venv
        # and the repo, as /opt/venv and /opt/torghut are on the image's path
        pythonpath = [sysconfig.get_paths()["purelib"], str(REPO_ROOT)]
        bin_dir = str(Path(sys.executable).parent)
        env = {
            **self.job_env,
            "FLINK_HOME": str(home),
            "FLINK_CONF_DIR": str(self.conf_dir),
            "FLINK_LIB_DIR": str(self.lib_dir),
            "FLINK_PLUGINS_DIR": str(self.plugins_dir),
            "FLINK_LOG_DIR": str(self.log_dir),
            "FLINK_PID_DIR": str(self.run_dir / "pid"),
            "FLINK_IDENT_STRING": ident,
            "PYFLINK_CLIENT_EXECUTABLE": sys.executable,
            "PYTHONPATH": os.pathsep.join(pythonpath),
            "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
        }
        if self.s3_access_key:
            env["AWS_ACCESS_KEY_ID"] = self.s3_access_key
            env["AWS_SECRET_ACCESS_KEY"] = self.s3_secret_key
        return env

    def _launch(self, name: str, script: str, args: list[str]) -> FlinkProcess:
        """`bash <script> start-foreground -D <own metrics port> args...`: the script execs
        the JVM, so the launched pid is the JVM's and leads its process group."""
        port = procs.free_port()
        log = self.log_dir / f"{name}.out"
        argv = [str(flink_home() / "bin" / script), "start-foreground"]
        argv += ["-D", f"metrics.reporter.prom.port={port}", *args]
        proc = apps.launch(
            ["bash", *argv],
            self.process_env(name),
            log,
            cwd=self.run_dir,
            die_with_parent=self.die_with_parent,
        )
        return FlinkProcess(name, proc, proc.pid, log, port)

    # --- processes ----------------------------------------------------------------------
    def start_jobmanager(self, restore_from: str | None = None) -> FlinkProcess:
        """The JobManager in application mode: it runs `python -m flink_job` (PythonDriver)
        and schedules the job on whatever TaskManagers register."""
        home = flink_home()
        python_jar = next((home / "opt").glob("flink-python-*.jar"))
        # --jars takes several values: it goes first, --job-classname ends it; what follows
        # the options is the program's arguments (the FlinkDeployment's job.args)
        argv = ["--jars", str(python_jar), "--job-classname", PYTHON_DRIVER]
        if restore_from:
            argv += ["--fromSavepoint", restore_from]
        argv += ["-pyclientexec", sys.executable, "-pym", "flink_job"]
        n = len(self.retired) + 1
        name = "jobmanager" if n == 1 else f"jobmanager-{n}"
        self.jobmanager = self._launch(name, "standalone-job.sh", argv)
        return self.jobmanager

    def replace_jobmanager(self, restore_from: str | None) -> FlinkProcess:
        """A new JobManager for the same job after the old one died (`kill9` it first):
        application mode again, same `config.yaml`. With `ha`, pass `restore_from=None`: the
        new JobManager is elected once ZooKeeper expired the old one's session, recovers the
        job (same id) from the HA store and restores it from the latest completed checkpoint
        the store points at; running TaskManagers retrieve the new leader from ZooKeeper.

        Without HA: the job restored from `restore_from` (the newest completed
        checkpoint: `flink_job.restore.latest_checkpoint`). What Kubernetes HA does with a new
        JobManager pod, except that HA reads the checkpoint pointer from its ConfigMaps and
        here the caller names it. Same `config.yaml`, so the same RPC and REST ports: running
        TaskManagers know the JobManager only by that address (no leader retrieval without
        HA) and register with the new one. They cannot run the restored job, though: it is a
        new job (new id, new user-code classloader) and pemja, which embeds CPython in the
        TaskManager JVM in thread mode, fails to load libpython a second time from another
        classloader on Java 17 (`NoSuchFieldException: loadedLibraryNames`, FLINK-37727).
        So restart them too (`restart_taskmanagers`)."""
        if self.ha is not None and restore_from:
            raise FlinkClusterError(
                f"replace_jobmanager({restore_from!r}) on an HA cluster: the new JobManager "
                "recovers the job and its latest checkpoint from the HA store; pass None"
            )
        old = self.jobmanager
        if old is not None:
            if old.alive():
                raise FlinkClusterError(f"{old.name} (pid {old.pid}) is still running")
            self.retired.append(old)
        jm = self.start_jobmanager(restore_from)
        self.save_state()
        return jm

    def start_taskmanager(self) -> FlinkProcess:
        self._started += 1
        name = f"taskmanager-{self._started}"
        tm = self._launch(name, "taskmanager.sh", ["-D", f"taskmanager.resource-id={name}"])
        self.workers.append(tm)
        return tm

    def restart_taskmanagers(self) -> list[FlinkProcess]:
        """`kill -9` every live TaskManager and start as many new ones (fresh JVMs)."""
        live = [tm for tm in self.workers if tm.alive()]
        for tm in live:
            tm.kill9()
        fresh = [self.start_taskmanager() for _ in live]
        self.save_state()
        return fresh

    def start(self, restore_from: str | None = None, timeout_s: float = 120.0) -> None:
        """Prepare the dirs, start the JobManager and the TaskManagers, wait for REST."""
        self.prepare()
        jm = self.start_jobmanager(restore_from)
        for _ in range(self.taskmanagers):
            self.start_taskmanager()
        self.save_state()
        self.wait(lambda: self.rest("/overview"), timeout_s, "the REST API", jm)

    def stop(self) -> None:
        """SIGTERM each process group, SIGKILL what is left (newest first)."""
        jms = [*([self.jobmanager] if self.jobmanager else []), *reversed(self.retired)]
        for p in [*reversed(self.workers), *jms]:
            procs.stop(p.pid, timeout_s=10)
            if p.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.proc.wait(5)
        state = self.run_dir / STATE_FILE
        state.unlink(missing_ok=True)

    def __enter__(self) -> FlinkCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def save_state(self) -> Path:
        path = self.run_dir / STATE_FILE
        procs_ = [*([self.jobmanager] if self.jobmanager else []), *self.workers]
        path.write_text(
            json.dumps(
                {
                    "rest_url": self.rest_url,
                    "processes": [
                        {
                            "name": p.name,
                            "pid": p.pid,
                            "log": str(p.log_file),
                            "metrics_port": p.metrics_port,
                        }
                        for p in procs_
                    ],
                },
                indent=2,
            )
        )
        return path

    # --- REST ---------------------------------------------------------------------------
    def rest(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """GET `path`, or POST `body` as JSON to it."""
        return rest_call(self.rest_url, path, body)

    def stop_with_savepoint(
        self, job_id: str, target_dir: str, timeout_s: float = 120.0, drain: bool = False
    ) -> str:
        """Stop the job with a savepoint in `target_dir` (`POST /jobs/<id>/stop`) and wait
        for it; the savepoint's path (`.../savepoint-<id>-<hex>`)."""
        trigger = trigger_stop_with_savepoint(self.rest_url, job_id, target_dir, drain)
        return str(
            self.wait(
                lambda: savepoint_location(self.rest_url, job_id, trigger),
                timeout_s,
                f"the savepoint of job {job_id}",
            )
        )

    def wait(self, check, timeout_s: float, what: str, proc: FlinkProcess | None = None) -> Any:
        """Poll `check()` until truthy (REST errors count as not yet); fail at the deadline
        or when `proc` (default: the JobManager) died, naming its log."""
        proc = proc or self.jobmanager
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                value = check()
                if value:
                    return value
            except (urllib.error.URLError, OSError, ValueError, KeyError):
                pass
            if proc is not None and not proc.alive():
                raise FlinkClusterError(
                    f"{proc.name} exited while waiting for {what}; logs in {self.log_dir}"
                )
            if time.monotonic() >= deadline:
                raise FlinkClusterError(
                    f"timed out after {timeout_s:.0f}s waiting for {what}; logs in {self.log_dir}"
                )
            time.sleep(0.25)

    def job_id(self, timeout_s: float = 120.0) -> str:
        jobs = self.wait(lambda: self.rest("/jobs")["jobs"], timeout_s, "the job to be submitted")
        return str(jobs[0]["id"])

    def job_state(self, job_id: str) -> str:
        return str(self.rest(f"/jobs/{job_id}")["state"])

    def all_tasks_running(self, job_id: str) -> bool:
        job = self.rest(f"/jobs/{job_id}")
        return job["state"] == "RUNNING" and all(v["status"] == "RUNNING" for v in job["vertices"])

    def checkpoints(self, job_id: str) -> dict:
        """`/jobs/<id>/checkpoints`: counts, `latest.completed`, `latest.restored`, ..."""
        return dict(self.rest(f"/jobs/{job_id}/checkpoints"))

    def latest_completed(self, job_id: str) -> dict | None:
        return (self.checkpoints(job_id).get("latest") or {}).get("completed")

    def taskmanager_count(self) -> int:
        return len(self.rest("/taskmanagers")["taskmanagers"])


def rest_call(rest_url: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        rest_url + path, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def trigger_stop_with_savepoint(
    rest_url: str, job_id: str, target_dir: str, drain: bool = False
) -> str:
    """`POST /jobs/<id>/stop`: the trigger id to poll with `savepoint_location`."""
    body = {"targetDirectory": target_dir, "drain": drain}
    return str(rest_call(rest_url, f"/jobs/{job_id}/stop", body)["request-id"])


def savepoint_location(rest_url: str, job_id: str, trigger: str) -> str | None:
    """`/jobs/<id>/savepoints/<trigger>`: None while IN_PROGRESS, the path once COMPLETED;
    raises FlinkClusterError with Flink's cause if it failed."""
    status = rest_call(rest_url, f"/jobs/{job_id}/savepoints/{trigger}")
    if status["status"]["id"] != "COMPLETED":
        return None
    op = status.get("operation") or {}
    if op.get("failure-cause"):
        cause = op["failure-cause"]
        raise FlinkClusterError(
            f"savepoint of job {job_id} failed: {cause.get('stack-trace', cause)}"[:4000]
        )
    return str(op["location"])


# --- CLI -----------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "A standalone Flink cluster on loopback running the TA job in application mode, "
        "as the FlinkDeployment does: one JobManager (it runs `python -m flink_job` through "
        "PythonDriver) and N TaskManagers, separate JVMs from the installed apache-flink "
        "distribution, config.yaml generated from flink_job.environment.flink_config, the "
        "S3 filesystem and the Prometheus reporter as plugins (docs/deploy.md, 'Local "
        "standalone cluster')."
    )
    parser.epilog = (
        "Job settings come from TORGHUT_TA_* variables; the Kafka, registry and S3 endpoints "
        "of the running local stack (`torghut stack up`) fill what is not set. `up` stays in "
        "the foreground and Ctrl-C stops every process; with --detach it returns and "
        "`down` stops them."
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = sub.add_parser("up", help="start the cluster and the job")
    up.add_argument("--taskmanagers", type=int, default=2, help="TaskManager JVMs (default 2)")
    up.add_argument("--slots", type=int, default=1, help="slots per TaskManager (default 1)")
    up.add_argument("--parallelism", type=int, help="job parallelism (default: all slots)")
    up.add_argument("--run-dir", type=Path, help="default .stack/flink-cluster-<time>")
    up.add_argument("--detach", action="store_true", help="return once up; stop with `down`")
    restore = up.add_mutually_exclusive_group()
    restore.add_argument(
        "--restore-latest",
        action="store_true",
        help="start the job from the newest completed checkpoint in the checkpoint dir",
    )
    restore.add_argument(
        "--from-savepoint",
        metavar="PATH",
        help="start the job from this savepoint or checkpoint (s3a://.../savepoint-...), "
        "e.g. at another --parallelism (keyed state is redistributed)",
    )
    down = sub.add_parser("down", help="stop a detached cluster")
    down.add_argument("--run-dir", type=Path, help="default: the newest .stack/flink-cluster-*")
    sp = sub.add_parser(
        "savepoint",
        help="stop the running job with a savepoint (REST POST /jobs/<id>/stop) and print "
        "its path; the JobManager stays up until `down` or Ctrl-C of `up`",
    )
    sp.add_argument("--run-dir", type=Path, help="default: the newest .stack/flink-cluster-*")
    sp.add_argument("--target-dir", help="where to write it (default: <checkpoint dir>/savepoints)")
    sp.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for it (default 120)"
    )
    sub.add_parser("config", help="print the generated config.yaml keys and exit")


def _newest_run_dir() -> Path:
    dirs = sorted(STACK_HOME.glob("flink-cluster-*"), key=lambda p: p.stat().st_mtime)
    live = [d for d in dirs if (d / STATE_FILE).exists()]
    if not live:
        raise FlinkClusterError(f"no running cluster under {STACK_HOME}")
    return live[-1]


def _down(run_dir: Path) -> int:
    state = json.loads((run_dir / STATE_FILE).read_text())
    for p in reversed(state["processes"]):
        procs.stop(int(p["pid"]), timeout_s=10)
        print(f"[flink-cluster] stopped {p['name']} (pid {p['pid']})", file=sys.stderr)
    (run_dir / STATE_FILE).unlink(missing_ok=True)
    return 0


def _savepoint(args: argparse.Namespace) -> int:
    """Stop-with-savepoint of the cluster's job; the path on stdout, for `--from-savepoint`."""
    from flink_job.settings import TaSettings
    from torghut.ta_cli import settings_from_stack

    run_dir = (args.run_dir or _newest_run_dir()).resolve()
    rest_url = json.loads((run_dir / STATE_FILE).read_text())["rest_url"]
    target = args.target_dir
    if not target:
        settings = TaSettings(**settings_from_stack({}))  # type: ignore[arg-type]
        target = settings.checkpoint_dir.rstrip("/") + "/savepoints"
    running = [j for j in rest_call(rest_url, "/jobs")["jobs"] if j["status"] == "RUNNING"]
    if not running:
        raise FlinkClusterError(f"no RUNNING job at {rest_url}")
    job = str(running[0]["id"])
    trigger = trigger_stop_with_savepoint(rest_url, job, target)
    print(f"[flink-cluster] stopping job {job} with a savepoint in {target}", file=sys.stderr)
    deadline = time.monotonic() + args.timeout
    while (location := savepoint_location(rest_url, job, trigger)) is None:
        if time.monotonic() >= deadline:
            raise FlinkClusterError(f"no savepoint after {args.timeout:.0f}s (job {job})")
        time.sleep(0.25)
    print(location)
    return 0


def _iter_forever() -> Iterator[None]:
    while True:
        yield None
        time.sleep(1.0)


def run(args: argparse.Namespace) -> int:
    from torghut.ta_cli import settings_from_stack

    if args.action == "down":
        return _down((args.run_dir or _newest_run_dir()).resolve())
    if args.action == "savepoint":
        return _savepoint(args)
    values: dict[str, Any] = {}
    if args.action == "up":
        values["parallelism"] = args.parallelism or args.taskmanagers * args.slots
    values = settings_from_stack(values)
    if args.action == "config":
        cluster = FlinkCluster(STACK_HOME / "flink-cluster-preview", values)
        for k, v in sorted(cluster.config().items()):
            print(f"{k}: {v}")
        return 0
    run_dir = args.run_dir or STACK_HOME / f"flink-cluster-{time.strftime('%Y%m%d-%H%M%S')}"
    cluster = FlinkCluster(
        run_dir,
        values,
        taskmanagers=args.taskmanagers,
        slots=args.slots,
        die_with_parent=not args.detach,
    )
    restore = args.from_savepoint
    if args.restore_latest:
        from flink_job.restore import latest_checkpoint

        restore = latest_checkpoint(cluster.settings)
        print(f"[flink-cluster] restoring from {restore or 'nothing'}", file=sys.stderr)
    try:
        cluster.start(restore_from=restore)
        job = cluster.job_id()
        print(
            f"[flink-cluster] up: REST/web UI {cluster.rest_url}, job {job}, "
            f"{args.taskmanagers} TaskManager(s), logs in {cluster.log_dir}",
            file=sys.stderr,
        )
        if args.detach:
            print(
                f"[flink-cluster] stop with: torghut flink-cluster down --run-dir {run_dir}",
                file=sys.stderr,
            )
            return 0
        for _ in _iter_forever():
            if cluster.jobmanager is None or not cluster.jobmanager.alive():
                print("[flink-cluster] the JobManager exited", file=sys.stderr)
                return 1
    except KeyboardInterrupt:
        return 0
    except BaseException:
        cluster.stop()
        raise
    finally:
        if not args.detach:
            cluster.stop()
    return 0
