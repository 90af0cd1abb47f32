"""Replay a SageMaker training job the way the service runs it, on this machine.

What SageMaker does for a training job of the PyTorch container, done here from the job's request:
  - /opt/ml (moved by SAGEMAKER_BASE_DIR) gets input/config/ (hyperparameters, resourceconfig and
    inputdataconfig .json) from the request, and each channel's S3 data in input/data/<channel>/ (File mode);
  - /opt/ml/checkpoints is filled from CheckpointConfig.S3Uri before the job and synced back after it;
  - the container's entry runs `train` from sagemaker-training with the PyTorch framework module
    (SAGEMAKER_TRAINING_MODULE=sagemaker_pytorch_container.training:main), which fetches the uploaded source
    bundle, pip-installs its requirements.txt and runs train.py with the hyperparameters as `--key value`;
  - in a Python that has torch and the toolkits but not this package (like the container): a venv whose
    only link to the test environment's packages is a path entry, so the editable install of dogbreed is
    not seen and the job imports dogbreed from the bundle, as it would in the cloud.
A job of several instances runs one such host per network namespace (`ip netns`), each with its own
/etc/hosts naming algo-1..N, its own host name and address, talking over a veth pair.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.container_packages import site_packages_without

CONTAINER_TRAIN = "from sagemaker_training.cli.train import main; main()"
FRAMEWORK_MODULE = "sagemaker_pytorch_container.training:main"


# A job small enough for two CPU cores: 3 classes of 32 px images, ResNet18 from scratch.
TINY_JOB = [
    "model=resnet18",
    "model.weights=null",
    "model.freeze=all",
    "data.image_size=32",
    "data.batch_size=16",
    "data.num_workers=0",
    "trainer.accelerator=cpu",
    "trainer.enable_model_summary=false",
]


def make_container_python(where: Path, without: Sequence[str] = ()) -> Path:
    """A Python like the PyTorch training container's: torch and the toolkits importable, dogbreed not,
    nor the distributions named in `without` (pip installs them into it for real)."""
    # No pip or setuptools of its own: the toolkit's `pip install -r requirements.txt` uses the test
    # environment's, and finds every requirement satisfied (as it would after installing them).
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, capture_output=True
    )
    python = where / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # A path entry, not a site dir: the .pth files in there (the editable dogbreed among them) are not run.
    seen = sysconfig.get_paths()["purelib"]
    if without:
        seen = str(site_packages_without(without, where / "test-environment"))
    Path(purelib, "test-environment.pth").write_text(seen + "\n")
    probe = subprocess.run(
        [str(python), "-c", "import torch, sagemaker_training, sagemaker_pytorch_container; import dogbreed"],
        capture_output=True,
        text=True,
        env=without_pythonpath(),
    )
    assert "No module named 'dogbreed'" in probe.stderr, probe.stderr[-2000:]
    return python


def without_pythonpath() -> dict[str, str]:
    """This environment without PYTHONPATH, which would show the container-like Python this project."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def download_prefix(s3: Any, uri: str, destination: Path) -> None:
    bucket, prefix = _split(uri.rstrip("/") + "/")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            target = destination / item["Key"][len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(target))


def upload_folder(s3: Any, folder: Path, uri: str) -> None:
    bucket, prefix = _split(uri.rstrip("/") + "/")
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            s3.upload_file(str(path), bucket, prefix + path.relative_to(folder).as_posix())


@dataclass
class Host:
    """One instance of the job: its /opt/ml and how to reach it."""

    name: str
    base: Path
    interface: str = "lo"
    namespace: str | None = None


def prepare_host(job: dict, s3: Any, host: Host, hosts: list[str], work: Path) -> dict[str, str]:
    """Lay out `host.base` as SageMaker lays out /opt/ml for `job` (a training job's request or description);
    return the container's environment."""
    config = host.base / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    hyperparameters = dict(job["HyperParameters"])
    # The toolkit fetches the source bundle itself; the copy is made here because a host in its own network
    # namespace cannot reach the S3 fake on this machine's loopback. Same bytes as uploaded.
    bundle = work / "sourcedir.tar.gz"
    if not bundle.exists():
        bucket, key = _split(json.loads(hyperparameters["sagemaker_submit_directory"]))
        s3.download_file(bucket, key, str(bundle))
    hyperparameters["sagemaker_submit_directory"] = json.dumps(str(bundle))
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": host.name, "hosts": hosts, "network_interface_name": host.interface})
    )
    channels = {c["ChannelName"]: c for c in job.get("InputDataConfig", [])}
    (config / "inputdataconfig.json").write_text(
        json.dumps(
            {
                name: {"TrainingInputMode": c.get("InputMode", "File"), "RecordWrapperType": "None"}
                for name, c in channels.items()
            }
        )
    )
    for name, channel in channels.items():
        uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
        download_prefix(s3, uri, host.base / "input" / "data" / name)
    checkpoint = (job.get("CheckpointConfig") or {}).get("S3Uri")
    if checkpoint:
        download_prefix(s3, checkpoint, host.base / "checkpoints")
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "AWS_", "PYTHONPATH"))}
    return {
        **keep,
        **(job.get("Environment") or {}),
        "SAGEMAKER_BASE_DIR": str(host.base),
        "SAGEMAKER_TRAINING_MODULE": FRAMEWORK_MODULE,
        "TRAINING_JOB_NAME": job["TrainingJobName"],
        "PYTHONUNBUFFERED": "1",
        "PIP_NO_INDEX": "1",  # the requirements are all there; never reach for the network
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }


def finish_host(job: dict, s3: Any, host: Host) -> None:
    """After the job: checkpoints synced back to S3, as SageMaker does."""
    checkpoint = (job.get("CheckpointConfig") or {}).get("S3Uri")
    if checkpoint and (host.base / "checkpoints").is_dir():
        upload_folder(s3, host.base / "checkpoints", checkpoint)


def run_job(
    job: dict, s3: Any, python: Path, work: Path, *, timeout: int = 900
) -> subprocess.CompletedProcess:
    """A single-instance job: one host named algo-1 (resolved through /etc/hosts as localhost is)."""
    host = Host("localhost", work / "opt_ml")
    env = prepare_host(job, s3, host, [host.name], work)
    result = subprocess.run(
        [str(python), "-c", CONTAINER_TRAIN], env=env, capture_output=True, text=True, timeout=timeout
    )
    finish_host(job, s3, host)
    return result


def training_job_of_tuning_job(tuning: dict, values: dict[str, str], name: str) -> dict:
    """The training job a tuning job starts for one point of its ranges, as the service builds it:
    the definition's static hyperparameters plus the point's values (raw strings) and the objective."""
    definition = tuning["TrainingJobDefinition"]
    hyperparameters = dict(definition["StaticHyperParameters"])
    hyperparameters.update(values)
    objective = tuning["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]
    hyperparameters["_tuning_objective_metric"] = objective["MetricName"]
    return {
        "TrainingJobName": name,
        "HyperParameters": hyperparameters,
        "InputDataConfig": definition.get("InputDataConfig", []),
        "CheckpointConfig": definition.get("CheckpointConfig"),
        "OutputDataConfig": definition["OutputDataConfig"],
    }


def one_point(ranges: dict) -> dict[str, str]:
    """One point of a tuning job's ParameterRanges: each range's lower end, categorical ones' first value."""
    point = {}
    for kind in ("ContinuousParameterRanges", "IntegerParameterRanges"):
        for r in ranges.get(kind, []):
            point[r["Name"]] = r["MinValue"]
    for r in ranges.get("CategoricalParameterRanges", []):
        point[r["Name"]] = r["Values"][0]
    return point


# ------------------------------------------------------------------------------------ several hosts
def namespaces_available() -> str | None:
    """None when this machine can give each host its own network namespace, else why not."""
    if shutil.which("ip") is None or shutil.which("unshare") is None:
        return "needs iproute2 (ip) and util-linux (unshare)"
    probe = f"dogbreed-probe-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    return None


@contextmanager
def network_of_hosts(count: int) -> Iterator[list[Host]]:
    """`count` hosts algo-1..N, each in its own network namespace, linked by veth pairs to a bridge-less
    star (count == 2: one veth pair), each with /etc/hosts naming them all."""
    assert count == 2, "two hosts are enough to show that ranks, rendezvous and exports are right"
    tag = uuid.uuid4().hex[:6]
    names = [f"algo-{i + 1}" for i in range(count)]
    spaces = [f"dogbreed-{tag}-{i + 1}" for i in range(count)]
    addresses = [f"10.251.{int(tag[:2], 16)}.{i + 1}" for i in range(count)]
    named = "".join(f"{address} {name}\n" for address, name in zip(addresses, names, strict=True))
    hosts_file = "127.0.0.1 localhost\n" + named

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True)

    try:
        for space in spaces:
            ip("netns", "add", space)
            Path("/etc/netns", space).mkdir(parents=True, exist_ok=True)
            Path("/etc/netns", space, "hosts").write_text(hosts_file)
            ip("-n", space, "link", "set", "lo", "up")
        ip(
            "link",
            "add",
            f"db{tag}a",
            "netns",
            spaces[0],
            "type",
            "veth",
            "peer",
            "name",
            f"db{tag}b",
            "netns",
            spaces[1],
        )
        for space, end, address in zip(spaces, ("a", "b"), addresses, strict=True):
            ip("-n", space, "link", "set", f"db{tag}{end}", "name", "eth0")
            ip("-n", space, "addr", "add", f"{address}/24", "dev", "eth0")
            ip("-n", space, "link", "set", "eth0", "up")
        yield [Host(name, Path(), "eth0", space) for name, space in zip(names, spaces, strict=True)]
    finally:
        for space in spaces:
            subprocess.run(["ip", "netns", "delete", space], capture_output=True)
            shutil.rmtree(Path("/etc/netns", space), ignore_errors=True)


def start_host(host: Host, python: Path, env: dict[str, str]) -> subprocess.Popen:
    """The container entry on `host`: inside its network namespace, with its own host name."""
    command = f"hostname {host.name} && exec {python} -c '{CONTAINER_TRAIN}'"
    return subprocess.Popen(
        ["ip", "netns", "exec", host.namespace, "unshare", "--uts", "sh", "-c", command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def extract(archive: Path, destination: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(destination, filter="data")
    return destination


def lose_host(host: Host, *, link_down: bool) -> None:
    """`host` lost: every process in its namespace killed (SIGKILL, no goodbye); with `link_down`, its link
    taken down first, so not even the kernel's resets reach the others (an instance that vanished)."""
    if link_down:
        subprocess.run(["ip", "-n", host.namespace, "link", "set", "eth0", "down"], check=True)
    pids = subprocess.run(["ip", "netns", "pids", host.namespace], capture_output=True, text=True).stdout
    for pid in pids.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


class Output:
    """A process's output, read as it comes (a thread), so a test can wait for a line while it runs."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float) -> bool:
        """Whether a line holding `text` came within `timeout` seconds (polled)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in list(self.lines)):
                return True
            time.sleep(0.2)
        return False

    @property
    def text(self) -> str:
        self._thread.join(timeout=10)
        return "".join(self.lines)


# ------------------------------------------------------------------------------------ the container's PID 1
# The PyTorch training container's entry point is `bash -m start_with_right_hostname.sh train`: bash, PID 1
# of the container, runs `train` (the toolkit) as its child, with no trap. This is that script's shape, less
# the gethostname preload it compiles first.
CONTAINER_ENTRY = """#!/usr/bin/env bash
if [[ "$1" = "train" ]]; then
    "$CONTAINER_PYTHON" -c "$CONTAINER_TRAIN"
else
    "$@"
fi
"""


def start_container(python: Path, env: dict[str, str], work: Path) -> subprocess.Popen:
    """The container's process tree: the entry script under bash as PID 1 of its own PID namespace, as
    `docker run` starts it; the toolkit and train.py below it."""
    script = work / "start_with_right_hostname.sh"
    script.write_text(CONTAINER_ENTRY)
    env = {**env, "CONTAINER_PYTHON": str(python), "CONTAINER_TRAIN": CONTAINER_TRAIN}
    return subprocess.Popen(
        ["unshare", "--fork", "--pid", "--mount-proc", "bash", "-m", str(script), "train"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def start_toolkit(python: Path, env: dict[str, str]) -> subprocess.Popen:
    """The toolkit's `train` alone (no container entry above it), not waited for."""
    return subprocess.Popen(
        [str(python), "-c", CONTAINER_TRAIN],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def descendant_running(pid: int, text: str) -> int | None:
    """The first process below `pid` whose command line holds `text`."""
    for child in children(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in command:
            return child
        found = descendant_running(child, text)
        if found is not None:
            return found
    return None
