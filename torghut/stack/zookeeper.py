"""Apache ZooKeeper 3.8, a single standalone server on loopback, from the Maven-fetched jars
(jvm/zookeeper): the HA service of the local standalone Flink cluster
(`torghut.flink_cluster.FlinkCluster(ha=...)`), where Kubernetes HA is not available.

Flink's ZooKeeper HA client is the one flink-dist bundles (shaded Curator 5 and ZooKeeper 3);
this is only the server. Ready when ZooKeeper's four-letter word `srvr` on the client port
reports it serving (`Mode: standalone`; `ruok` answers `imok` before it serves).
"""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from torghut.stack import procs
from torghut.stack.errors import MissingArtifactError
from torghut.stack.paths import ZOOKEEPER_LIBS

MAIN = "org.apache.zookeeper.server.ZooKeeperServerMain"
LOG4J2 = """\
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
"""


def classpath() -> str:
    if not any(ZOOKEEPER_LIBS.glob("zookeeper-3.*.jar")):
        raise MissingArtifactError(
            f"ZooKeeper jars missing in {ZOOKEEPER_LIBS}; run `make setup` (Maven fetch)"
        )
    return str(ZOOKEEPER_LIBS / "*")


def four_letter_word(port: int, word: str = "srvr", timeout_s: float = 2.0) -> str:
    """Send a four-letter word to the client port, return the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        s.sendall(word.encode())
        chunks = []
        while chunk := s.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def server_config(data_dir: Path, port: int, tick_ms: int) -> str:
    # sessions may be as short as 2 ticks: a drill's HA session timeout is a few seconds
    return (
        f"tickTime={tick_ms}\n"
        f"dataDir={data_dir}\n"
        f"clientPort={port}\n"
        "clientPortAddress=127.0.0.1\n"
        "maxClientCnxns=0\n"
        # no AdminServer (its Jetty would take port 8080)
        "admin.enableServer=false\n"
        "4lw.commands.whitelist=ruok,srvr\n"
    )


@dataclass
class ZooKeeperServer:
    """One standalone ZooKeeper server under `run_dir` (data, config, log). `die_with_parent`:
    SIGKILL when the starting thread dies (PR_SET_PDEATHSIG), as the cluster's JVMs."""

    run_dir: Path
    port: int = 0
    tick_ms: int = 500
    heap: str = "128m"
    die_with_parent: bool = True
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def connect_string(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "zookeeper.log"

    def start(self, timeout_s: float = 60.0) -> ZooKeeperServer:
        cp = classpath()
        self.run_dir = Path(self.run_dir).resolve()
        data = self.run_dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.port = self.port or procs.free_port()
        cfg = self.run_dir / "zoo.cfg"
        cfg.write_text(server_config(data, self.port, self.tick_ms))
        log4j = self.run_dir / "log4j2.properties"
        log4j.write_text(LOG4J2)
        argv = [
            "java",
            f"-Xmx{self.heap}",
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            cp,
            MAIN,
            str(cfg),
        ]
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=not self.die_with_parent,
                preexec_fn=procs.die_with_parent if self.die_with_parent else None,
            )
        procs.wait_until(
            "zookeeper",
            self.log_file,
            self.proc.pid,
            lambda: "Mode: standalone" in four_letter_word(self.port),
            timeout_s,
            f"ZooKeeper on {self.connect_string}",
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop(self.proc.pid, timeout_s=10)
            self.proc.wait(10)

    def __enter__(self) -> ZooKeeperServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


