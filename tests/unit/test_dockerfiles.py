"""Dockerfile.forwarder and Dockerfile.flink: pinned, non-root, no baked secrets, right paths."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = ("Dockerfile.forwarder", "Dockerfile.flink")
SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|TOKEN|CREDENTIAL", re.IGNORECASE)


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / name).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        op, _, args = full.partition(" ")
        out.append((op.upper(), args.strip()))
    return out


def base_images(name: str) -> list[str]:
    ins = instructions(name)
    args = dict(re.match(r"(\w+)=(\S+)", a).groups() for op, a in ins if op == "ARG" and "=" in a)
    stages = {a.split()[-1] for op, a in ins if op == "FROM" and " AS " in a.upper()}
    images = []
    for op, a in ins:
        if op == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], a.split()[0])
            if image not in stages:
                images.append(image)
    return images


def final_user(name: str) -> str:
    users = [a for op, a in instructions(name) if op == "USER"]
    assert users, f"{name} sets no USER"
    return users[-1]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_base_images_are_pinned_to_an_exact_tag(name) -> None:
    for image in base_images(name):
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", image
        assert re.search(r"\d+\.\d+\.\d+", tag), f"{image}: pin a full version, not a series"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_image_runs_as_a_numeric_non_root_user(name) -> None:
    uid = final_user(name).split(":")[0]
    assert uid.isdigit() and int(uid) > 0, uid


@pytest.mark.parametrize("name", DOCKERFILES)
def test_no_secret_is_baked_into_env_or_build_args(name) -> None:
    for op, args in instructions(name):
        if op not in {"ENV", "ARG"}:
            continue
        for key, value in re.findall(r"(\w+)=(\"[^\"]*\"|\S+)", args):
            assert not SECRET_NAME.search(key), f"{name}: {op} {key}={value}"
        if op == "ARG" and "=" not in args:
            assert not SECRET_NAME.search(args), f"{name}: ARG {args}"


def test_forwarder_has_no_healthcheck_and_needs_no_flink() -> None:
    ins = instructions("Dockerfile.forwarder")
    assert not [a for op, a in ins if op == "HEALTHCHECK"], "probes come from Kubernetes"
    text = " ".join(a for _, a in ins)
    # the build stage installs a C compiler (forwarder/_fastroute.c); the image runs the last
    # stage, which gets no OS packages at all
    last = max(i for i, (op, _) in enumerate(ins) if op == "FROM")
    runtime = " ".join(a for _, a in ins[last:])
    assert "apt-get" not in runtime and "gcc" not in runtime, "no extra OS tools in the image"
    build = " ".join(a for _, a in ins[:last])
    assert "gcc" in build and "assert p.NATIVE_PLUGIN" in build, "the native path is built"
    assert "chdb" not in text
    assert ("EXPOSE", "8080") in ins
    assert "PYTHONDONTWRITEBYTECODE=1" in text, "read-only root filesystem friendly"


def test_forwarder_base_is_slim_python_3_11() -> None:
    for image in base_images("Dockerfile.forwarder"):
        assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", image), image


def test_flink_image_is_the_official_flink_1_20_java17_with_matching_pyflink() -> None:
    (image,) = base_images("Dockerfile.flink")
    m = re.fullmatch(r"flink:(1\.20\.\d+)-scala_2\.12-java17", image)
    assert m, image
    text = " ".join(a for _, a in instructions("Dockerfile.flink"))
    pins = re.findall(r"apache-flink==([\d.]+)", text)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (project_pin,) = [
        d for d in pyproject["project"]["dependencies"] if d.startswith("apache-flink")
    ]
    assert pins == [project_pin.split("==")[1]] == ["1.20.5"]
    assert "python3.11" in text
    jar_uri = (ROOT / "k8s/base/flink/flinkdeployment.yaml").read_text()
    assert f"flink-python-{m.group(1)}.jar" in jar_uri, "jarURI must match the image's Flink"


def test_flink_image_puts_jars_and_the_s3_plugin_in_the_right_places() -> None:
    copies = [a.split() for op, a in instructions("Dockerfile.flink") if op == "COPY"]
    by_src = {c[-2]: c[-1] for c in copies if c[-2].startswith(".artifacts/")}
    assert by_src[".artifacts/flink/lib/*.jar"] == "/opt/flink/lib/"
    assert by_src[".artifacts/flink/plugins/s3-fs-hadoop/*.jar"] == (
        "/opt/flink/plugins/s3-fs-hadoop/"
    )
    job = [c for c in copies if c[-1] == "./flink_job"]
    workdirs = [a for op, a in instructions("Dockerfile.flink") if op == "WORKDIR"]
    assert job and "/opt/torghut" in workdirs


def test_flink_image_runs_as_the_flink_user() -> None:
    assert final_user("Dockerfile.flink") in {"flink", "9999", "9999:9999"}


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_context() -> None:
    lines = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "**", "allow-list: everything is excluded unless named"
    allowed = [ln[1:] for ln in lines if ln.startswith("!")]
    for never in (".venv", ".stack", ".git", ".artifacts/bin", ".runs"):
        assert not any(a.startswith(never) for a in allowed), never
    assert ".artifacts/flink/plugins/s3-fs-hadoop/*.jar" in allowed


def test_hadolint_finds_no_warnings() -> None:
    binary = ROOT / ".artifacts" / "bin" / "hadolint"
    hadolint = str(binary) if binary.exists() else shutil.which("hadolint")
    if not hadolint:
        pytest.skip("hadolint not installed (.artifacts/bin/hadolint); see k8s/TOOLS.md")
    proc = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "warning", *DOCKERFILES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("name", "packages"),
    [
        ("Dockerfile.forwarder", {"shared", "forwarder", "schemas", "torghut"}),
        ("Dockerfile.flink", {"shared", "flink_job", "schemas"}),
    ],
)
def test_an_image_ships_its_runtime_packages_and_no_dev_tooling(name, packages) -> None:
    copied = _copied_packages(name)
    assert copied == packages, f"{name} copies {sorted(copied)}"


def test_the_forwarder_image_and_deployment_run_python_dash_m_forwarder() -> None:
    (entry,) = [a for op, a in instructions("Dockerfile.forwarder") if op == "ENTRYPOINT"]
    assert entry.replace(" ", "") == '["python","-m","forwarder"]'
    deployment = (ROOT / "k8s/base/forwarder/deployment.yaml").read_text()
    assert 'command: ["python", "-m", "forwarder"]' in deployment


def _copied_packages(name: str) -> set[str]:
    # the source tree is copied folder by folder: COPY <folder> ./<folder>
    return {
        a.split()[0]
        for op, a in instructions(name)
        if op == "COPY" and len(a.split()) == 2 and a.split()[1] == "./" + a.split()[0]
    }


def _forwarder_image_job_commands() -> list[list[str]]:
    """The `command` of every k8s Job container that runs the forwarder image."""
    import yaml

    out = []
    for path in sorted((ROOT / "k8s/base/jobs").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not doc or doc.get("kind") != "Job":
                continue
            for c in doc["spec"]["template"]["spec"]["containers"]:
                if c["image"].startswith("torghut-forwarder:"):
                    out.append(c["command"])
    return out


def test_every_job_command_of_the_forwarder_image_runs_from_what_the_image_copies(
    tmp_path,
) -> None:
    """The schema Jobs run `torghut ...` in the forwarder image: their modules must be in the
    folders the Dockerfile copies (a tree of just those folders, the venv's third-party
    packages, no editable install of this checkout), and `--help` must work there."""
    import site

    commands = _forwarder_image_job_commands()
    assert commands, "no Job runs the forwarder image"
    for package in _copied_packages("Dockerfile.forwarder"):
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    paths = [str(tmp_path), *site.getsitepackages()]
    for command in commands:
        assert command[0] == "torghut", command
        code = (
            "import sys; sys.path[:0] = sys.argv[1].split(':'); "
            "from torghut.cli import main; import torghut; "
            f"assert torghut.__file__.startswith({str(tmp_path)!r}), torghut.__file__; "
            "sys.exit(main(sys.argv[2:]))"
        )
        # -S: no site module, so no .pth file puts this checkout on the path
        proc = subprocess.run(
            [sys.executable, "-S", "-c", code, ":".join(paths), *command[1:], "--help"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, f"{command}: {proc.stderr[-2000:]}"
