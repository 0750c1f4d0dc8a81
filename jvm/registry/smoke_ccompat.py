"""End-to-end check of the Apicurio Registry that `mvn -f jvm/pom.xml -pl registry package` lays out.

Starts it on a free loopback port with in-memory storage, drives the Confluent-compatible API
(/apis/ccompat/v7) the way our clients do, prints every request and answer, proves compatibility
enforcement and the Confluent wire format round trip, reports start time and RSS, then stops it.

    .venv/bin/python jvm/registry/smoke_ccompat.py                      # 2.6.13.Final on Java 17
    .venv/bin/python jvm/registry/smoke_ccompat.py \\
        --jar .artifacts/registry3/quarkus-app/quarkus-run.jar \\
        --java /usr/lib/jvm/temurin-25-jdk-amd64/bin/java                 # 3.3.3 (-P apicurio3), Java 21+

Exit code 0 only if every expectation held. Not a pytest file on purpose (no test_ prefix).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import fastavro
import requests

REPO = Path(__file__).resolve().parents[2]
CT = "application/vnd.schemaregistry.v1+json"
FAILURES: list[str] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


JVM_OPTS = ["-XX:TieredStopAtLevel=1", "-XX:ReservedCodeCacheSize=48m", "-Xss512k"]


def is_v3(jar: Path) -> bool:
    """3.x ships a Quarkus fast-jar (app/, quarkus/ beside quarkus-run.jar); 2.x a legacy-jar."""
    return (jar.parent / "quarkus").is_dir()


def command(java: str, jar: Path, port: int, mgmt_port: int, heap: str) -> list[str]:
    cmd = [java, f"-Xmx{heap}", *JVM_OPTS,
           f"-Dquarkus.http.port={port}", "-Dquarkus.http.host=127.0.0.1"]
    if is_v3(jar):
        # health/metrics live on a separate management port (default 9000: clashes between
        # instances); the H2 pool settings are apicurio.datasource.*
        cmd += [f"-Dquarkus.management.port={mgmt_port}", "-Dquarkus.management.host=127.0.0.1",
                "-Dapicurio.datasource.jdbc.initial-size=2", "-Dapicurio.datasource.jdbc.min-size=2",
                "-Dapicurio.datasource.jdbc.max-size=20"]
    else:
        cmd += ["-Dquarkus.datasource.jdbc.initial-size=2", "-Dquarkus.datasource.jdbc.min-size=2",
                "-Dquarkus.datasource.jdbc.max-size=20"]
    return [*cmd, "-jar", str(jar)]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def call(base: str, method: str, path: str, body: object | None = None) -> requests.Response:
    r = requests.request(method, base + path, timeout=30, headers={"Content-Type": CT, "Accept": CT},
                         data=None if body is None else json.dumps(body))
    shown = json.dumps(body) if body is not None else ""
    if len(shown) > 160:
        shown = shown[:157] + "..."
    print(f"$ {method} {path} {shown}".rstrip())
    print(f"  -> {r.status_code} {r.text.strip()[:400]}")
    return r


def expect(what: str, ok: bool) -> None:
    print(f"  [{'OK' if ok else 'FAIL'}] {what}")
    if not ok:
        FAILURES.append(what)


def record(fields: list[dict[str, object]]) -> str:
    return json.dumps({"type": "record", "name": "Tick", "namespace": "torghut.smoke",
                       "fields": fields})


F_SYMBOL = {"name": "symbol", "type": "string"}
F_PRICE = {"name": "price", "type": "double"}
F_SIZE = {"name": "size", "type": "double"}
F_VENUE = {"name": "venue", "type": "string", "default": ""}  # optional: has a default
F_SEQ = {"name": "seq", "type": "long"}  # required: no default

V1 = record([F_SYMBOL, F_PRICE, F_SIZE])
V2_ADD_OPTIONAL = record([F_SYMBOL, F_PRICE, F_SIZE, F_VENUE])
V3_ADD_REQUIRED = record([F_SYMBOL, F_PRICE, F_SIZE, F_VENUE, F_SEQ])
V3_REMOVE_REQUIRED = record([F_SYMBOL, F_PRICE, F_VENUE])  # drops `size`, which has no default


def drive(base: str) -> None:
    api = base + "/apis/ccompat/v7"
    s, other = "smoke.ticks-value", "smoke.other-value"

    print("\n## global compatibility")
    call(api, "GET", "/config")
    r = call(api, "PUT", "/config", {"compatibility": "BACKWARD"})
    expect("PUT /config BACKWARD -> 200", r.status_code == 200)
    r = call(api, "GET", "/config")
    expect("GET /config says BACKWARD", r.json().get("compatibilityLevel") == "BACKWARD")

    print("\n## register v1, ids, lookup")
    r = call(api, "POST", f"/subjects/{s}/versions", {"schema": V1, "schemaType": "AVRO"})
    id1 = r.json()["id"]
    expect("v1 registered with an integer id", r.status_code == 200 and isinstance(id1, int))
    r = call(api, "POST", f"/subjects/{s}/versions", {"schema": V1, "schemaType": "AVRO"})
    expect("re-registering v1 returns the same id", r.json().get("id") == id1)
    r = call(api, "GET", f"/schemas/ids/{id1}")
    expect("GET /schemas/ids/{id} returns v1",
           r.status_code == 200 and json.loads(r.json()["schema"]) == json.loads(V1))
    r = call(api, "POST", f"/subjects/{s}", {"schema": V1, "schemaType": "AVRO"})
    expect("POST /subjects/{s} (lookup) finds v1 as version 1",
           r.status_code == 200 and r.json().get("id") == id1 and r.json().get("version") == 1)
    r = call(api, "POST", f"/subjects/{other}/versions", {"schema": V1, "schemaType": "AVRO"})
    expect("same schema under another subject gets the same id (Confluent semantics)",
           r.json().get("id") == id1)
    r = call(api, "GET", "/schemas/ids/999999")
    expect("unknown id -> 404", r.status_code == 404)

    print("\n## BACKWARD enforcement (global rule)")
    r = call(api, "POST", f"/compatibility/subjects/{s}/versions/latest",
             {"schema": V3_ADD_REQUIRED, "schemaType": "AVRO"})
    expect("check: adding a required field (no default) is_compatible=false",
           r.json().get("is_compatible") is False)
    r = call(api, "POST", f"/subjects/{s}/versions", {"schema": V3_ADD_REQUIRED, "schemaType": "AVRO"})
    expect("register: adding a required field (no default) -> 409", r.status_code == 409)
    r = call(api, "POST", f"/subjects/{s}/versions", {"schema": V2_ADD_OPTIONAL, "schemaType": "AVRO"})
    id2 = r.json().get("id")
    expect("register: adding an optional field with a default -> 200, new id",
           r.status_code == 200 and isinstance(id2, int) and id2 != id1)
    r = call(api, "POST", f"/compatibility/subjects/{s}/versions/latest",
             {"schema": V3_REMOVE_REQUIRED, "schemaType": "AVRO"})
    expect("check: removing a field is BACKWARD-compatible (new reader ignores it), as in Confluent",
           r.json().get("is_compatible") is True)
    r = call(api, "GET", f"/subjects/{s}/versions")
    expect("versions are [1, 2]", r.json() == [1, 2])
    r = call(api, "GET", f"/subjects/{s}/versions/latest")
    expect("latest is version 2 with id2", r.json().get("version") == 2 and r.json().get("id") == id2)

    print("\n## per-subject compatibility")
    r = call(api, "PUT", f"/config/{s}", {"compatibility": "FULL"})
    expect("PUT /config/{subject} FULL -> 200", r.status_code == 200)
    r = call(api, "GET", f"/config/{s}")
    expect("GET /config/{subject} says FULL", r.json().get("compatibilityLevel") == "FULL")
    r = call(api, "GET", "/config")
    expect("global stays BACKWARD", r.json().get("compatibilityLevel") == "BACKWARD")
    r = call(api, "POST", f"/subjects/{s}/versions",
             {"schema": V3_REMOVE_REQUIRED, "schemaType": "AVRO"})
    expect("register under per-subject FULL: removing a required field -> 409", r.status_code == 409)
    r = call(api, "POST", f"/subjects/{other}/versions",
             {"schema": V3_REMOVE_REQUIRED, "schemaType": "AVRO"})
    expect("same removal under the other subject (global BACKWARD) -> 200", r.status_code == 200)

    print("\n## Confluent wire format round trip (magic 0 + 4-byte big-endian id + Avro body)")
    buf = io.BytesIO()
    buf.write(struct.pack(">BI", 0, id2))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(json.loads(V2_ADD_OPTIONAL)),
                               {"symbol": "AAPL", "price": 1.5, "size": 10.0, "venue": "V"})
    frame = buf.getvalue()
    magic, sid = struct.unpack_from(">BI", frame)
    writer = json.loads(requests.get(f"{api}/schemas/ids/{sid}", timeout=10).json()["schema"])
    back = fastavro.schemaless_reader(io.BytesIO(frame[5:]), fastavro.parse_schema(writer),
                                      fastavro.parse_schema(json.loads(V1)))
    print(f"  frame={frame.hex()} id={sid} decoded-as-v1={back}")
    expect("frame written with id2 decodes with the writer schema fetched by id (read as v1)",
           magic == 0 and back == {"symbol": "AAPL", "price": 1.5, "size": 10.0})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jar", type=Path, default=REPO / ".artifacts/registry/quarkus-app/quarkus-run.jar")
    ap.add_argument("--java", default="java")
    ap.add_argument("--heap", default="256m")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    port = args.port or free_port()
    mgmt_port = free_port()
    cmd = command(args.java, args.jar, port, mgmt_port, args.heap)
    base = f"http://127.0.0.1:{port}"
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"registry-smoke-{port}.log"
    print("command:", " ".join(cmd))
    t0 = time.monotonic()
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    try:
        while True:
            if proc.poll() is not None:
                print(log.read_text()[-3000:])
                print(f"registry exited with {proc.returncode}")
                return 1
            try:
                if requests.get(f"{base}/apis/ccompat/v7/subjects", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() - t0 > 120:
                print("not ready after 120 s")
                return 1
            time.sleep(0.1)
        ready_s = time.monotonic() - t0
        print(f"ready (GET /apis/ccompat/v7/subjects -> 200) after {ready_s:.1f} s, "
              f"RSS {rss_mib(proc.pid):.0f} MiB")
        started = [ln for ln in log.read_text().splitlines() if "started in" in ln or "SQL storage" in ln
                   or "Using h2" in ln]
        for ln in started:
            print("log:", ln.strip()[:220])
        health_url = (f"http://127.0.0.1:{mgmt_port}" if is_v3(args.jar) else base) + "/health/ready"
        health = requests.get(health_url, timeout=5)
        print(f"GET {health_url} -> {health.status_code} {health.json().get('status')}")
        expect("readiness endpoint says UP", health.status_code == 200)
        drive(base)
        print(f"\nRSS after the run: {rss_mib(proc.pid):.0f} MiB")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        print(f"stopped (exit {proc.returncode}); log: {log}")
    print(f"\n{len(FAILURES)} failed: {FAILURES}" if FAILURES else "\nall expectations held")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
