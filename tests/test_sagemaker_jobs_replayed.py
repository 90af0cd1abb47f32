"""SageMaker jobs launched for real (against moto), replayed as the service runs them (sagemaker_replay.py):
a training job and its spot restart, a tuning job's training job, a job meeting another job's checkpoints,
and a job of two instances, each in its own network namespace."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import boto3
import pytest
import torch
from omegaconf import OmegaConf

from dogbreed.model.checkpoints import read_checkpoint
from dogbreed.sagemaker.metrics import metric_definitions
from dogbreed.sagemaker.training_job import launch_training
from dogbreed.sagemaker.tuning_job import launch_tuning
from tests.conftest import MOTO_BUCKET, compose_config
from tests.sagemaker_replay import (
    CONTAINER_TRAIN,
    TINY_JOB,
    Host,
    Output,
    children,
    descendant_running,
    download_prefix,
    finish_host,
    lose_host,
    make_container_python,
    namespaces_available,
    network_of_hosts,
    one_point,
    prepare_host,
    run_job,
    start_container,
    start_host,
    start_toolkit,
    training_job_of_tuning_job,
)

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

ROLE = "arn:aws:iam::123456789012:role/dogbreed-replay"


def backend(*extra: str) -> list[str]:
    return [
        "backend=sagemaker",
        f"backend.role={ROLE}",
        f"backend.bucket={MOTO_BUCKET}",
        "backend.instance_type=ml.m5.large",
        *extra,
    ]


@pytest.fixture(scope="module")
def container_python(tmp_path_factory):
    return make_container_python(tmp_path_factory.mktemp("container") / "venv")


def sagemaker_client():
    return boto3.client("sagemaker", region_name="us-east-1")


def launched(tmp_path, overrides: list[str]) -> dict:
    """Launch a training job through the SDK (moto answers) and return it as the service describes it."""
    described = launch_training(compose_config(tmp_path, overrides), overrides)
    return sagemaker_client().describe_training_job(TrainingJobName=described["TrainingJobName"])


def printed_metrics(log: str) -> dict[str, float]:
    """The last value of each metric definition's regex in the job's log, as SageMaker reads them."""
    found = {}
    for definition in metric_definitions():
        values = re.findall(definition["Regex"], log)
        if values:
            found[definition["Name"]] = float(values[-1])
    return found


def test_training_job_trains_exports_and_a_spot_restart_resumes_its_own_checkpoint(
    aws, shapes3, tmp_path, container_python
):
    overrides = [*backend("backend.spot=true"), *TINY_JOB, f"data.root={shapes3}", "trainer.max_epochs=2"]
    job = launched(tmp_path / "launch", overrides)
    name = job["TrainingJobName"]

    first = run_job(job, aws, container_python, tmp_path / "job")
    log = first.stdout + first.stderr
    assert first.returncode == 0, log[-4000:]
    assert "No module named" not in log
    base = tmp_path / "job" / "opt_ml"
    assert (base / "model" / "weights.pt").is_file(), log[-5000:]
    assert (base / "model" / "code" / "inference.py").is_file()
    metrics = json.loads((base / "output" / "data" / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["num_classes"] == 3
    # The job's metric definitions read what it printed; the last val/* are the exported (best) weights'.
    printed = printed_metrics(log)
    assert printed["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-5)
    assert printed["val/loss"] == pytest.approx(metrics["best_score"], abs=1e-5)
    assert (base / "checkpoints" / name / "last.ckpt").is_file()

    # A spot interruption: SageMaker restarts the same job on a fresh instance, at the same /opt/ml, with
    # the checkpoints synced back from S3 (everything else of the first attempt gone).
    best = read_checkpoint(base / "checkpoints" / name / "last.ckpt")
    (best_path,) = {s["best_model_path"] for k, s in best["callbacks"].items() if "val/loss" in k}
    best_weights = read_checkpoint(best_path)["state_dict"]
    shutil.rmtree(base)
    second = run_job(job, aws, container_python, tmp_path / "job")
    log = second.stdout + second.stderr
    assert second.returncode == 0, log[-4000:]
    assert f"ckpt_path={base / 'checkpoints' / name / 'last.ckpt'}" in second.stdout
    assert "dirpath has changed" not in log  # Lightning forgets the best checkpoint when the path moves
    # The restart exports the best checkpoint's weights (the first attempt's choice), not the last epoch's.
    metrics = json.loads((base / "output" / "data" / "metrics.json").read_text())
    assert metrics["best_checkpoint"] == best_path
    exported = torch.load(base / "model" / "weights.pt", weights_only=True)
    assert all(torch.equal(value, best_weights[f"net.{key}"]) for key, value in exported.items())


def test_a_hyperparameter_reading_the_environment_resolves_in_the_job_and_is_never_written_out(
    aws, shapes3, tmp_path, container_python
):
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYCANARYKEY0"  # an AWS secret key's shape
    reference = "${oc.env:AWS_SECRET_ACCESS_KEY}"
    overrides = [
        *backend(),
        *TINY_JOB,
        f"data.root={shapes3}",
        "data.images_per_class=4",
        "trainer.max_epochs=1",
        f"data.url={reference}",
    ]
    job = launched(tmp_path / "launch", overrides)
    assert json.loads(job["HyperParameters"]["data.url"]) == reference  # sent as typed
    # The variable in the job's environment (where backend.environment would put it).
    job["Environment"] = {**(job.get("Environment") or {}), "AWS_SECRET_ACCESS_KEY": secret}
    result = run_job(job, aws, container_python, tmp_path / "job")
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]  # training resolved it: without the variable it would fail
    base = tmp_path / "job" / "opt_ml"
    files = [p for p in base.rglob("*") if p.is_file()]
    written = {p.relative_to(base).as_posix() for p in files}
    assert {"output/data/config.yaml", "output/data/manifest.json", "model/model.json"} <= written
    assert not [p for p in files if secret.encode() in p.read_bytes()]
    assert secret not in log
    assert f"url: {reference}" in (base / "output" / "data" / "config.yaml").read_text()
    model = json.loads((base / "model" / "model.json").read_text())
    assert f"data.url={reference}" in model["manifest"]["overrides"]


def test_a_job_never_resumes_another_jobs_checkpoint(aws, shapes3, tmp_path, container_python):
    # Two jobs given one checkpoint location (as every job of a base name had by default): the second,
    # with other hyperparameters, must train its own model, not export the first one's.
    shared = f"backend.checkpoint_s3_uri=s3://{MOTO_BUCKET}/shared-checkpoints"
    common = [*backend("backend.spot=true", shared), *TINY_JOB, f"data.root={shapes3}"]
    first = launched(tmp_path / "a", [*common, "trainer.max_epochs=2", "model.lr=0.01"])
    done = run_job(first, aws, container_python, tmp_path / "job-a")
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]

    second = launched(tmp_path / "b", [*common, "trainer.max_epochs=1", "model.lr=0.001"])
    assert second["CheckpointConfig"]["S3Uri"] == first["CheckpointConfig"]["S3Uri"]
    result = run_job(second, aws, container_python, tmp_path / "job-b")
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    base = tmp_path / "job-b" / "opt_ml"
    assert (base / "checkpoints" / first["TrainingJobName"] / "last.ckpt").is_file()  # it was there
    assert "ckpt_path=" not in log and f"checkpoints of other jobs ({first['TrainingJobName']})" in log
    metrics = json.loads((base / "output" / "data" / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["fit_seconds"] > 0
    theirs = torch.load(tmp_path / "job-a" / "opt_ml" / "model" / "weights.pt", weights_only=True)
    ours = torch.load(base / "model" / "weights.pt", weights_only=True)
    assert any(not torch.equal(theirs[k], ours[k]) for k in ours)


def test_a_checkpoint_written_with_other_hyperparameters_is_set_aside(
    aws, shapes3, tmp_path, container_python
):
    # The same job name with other hyperparameters in its folder: started fresh, the old files kept.
    overrides = [*backend("backend.spot=true"), *TINY_JOB, f"data.root={shapes3}", "trainer.max_epochs=1"]
    job = launched(tmp_path / "launch", overrides)
    assert run_job(job, aws, container_python, tmp_path / "one").returncode == 0
    changed = {**job, "HyperParameters": {**job["HyperParameters"], "model.lr": json.dumps("0.5")}}
    result = run_job(changed, aws, container_python, tmp_path / "two")
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "written with other hyperparameters" in log and "ckpt_path=" not in log
    checkpoints = tmp_path / "two" / "opt_ml" / "checkpoints"
    assert (checkpoints / f"{job['TrainingJobName']}.foreign-1" / "last.ckpt").is_file()


def test_a_tuning_jobs_training_job_runs_with_search_and_tune_overrides(
    aws, shapes3, tmp_path, container_python
):
    overrides = [
        *backend(),
        "search=smoke",
        "tune.objective=val/acc",
        "tune.n_trials=4",
        *TINY_JOB,
        f"data.root={shapes3}",
        "backend.tuning.max_jobs=2",
        "debugger=on",
        "profiler=on",
    ]
    space = OmegaConf.to_container(OmegaConf.load("conf/search/smoke.yaml"))
    space["trainer.max_epochs"] = {"type": "int", "low": 1, "high": 2}
    cfg = compose_config(tmp_path / "tune", overrides, "tune")
    described = launch_tuning(cfg, overrides, space)
    tuning = sagemaker_client().describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=described["HyperParameterTuningJobName"]
    )
    objective = tuning["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]
    assert objective == {"Type": "Maximize", "MetricName": "val/acc"}
    point = one_point(tuning["HyperParameterTuningJobConfig"]["ParameterRanges"])
    name = f"{described['HyperParameterTuningJobName']}-001-a1b2c3d4"
    job = training_job_of_tuning_job(tuning, point, name)

    result = run_job(job, aws, container_python, tmp_path / "job")
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    metrics = json.loads((tmp_path / "job" / "opt_ml" / "output" / "data" / "metrics.json").read_text())
    assert metrics["epochs"] == 1  # the point's trainer.max_epochs
    # The objective SageMaker reads (the last val/acc line) is the exported model's, not the last epoch's.
    printed = printed_metrics(log)
    assert printed["val/acc"] == pytest.approx(metrics["val/acc"], abs=1e-5)
    # Our own Debugger/Profiler rules ran inside the job: outcomes in its output, one metric line per rule.
    output = tmp_path / "job" / "opt_ml" / "output" / "data"
    outcomes = json.loads((output / "debug" / "rule_outcomes.json").read_text())
    outcomes += json.loads((output / "profile" / "rule_outcomes.json").read_text())
    values = {"IssuesFound": 1, "NoIssuesFound": 0, "NotEvaluated": -1}
    assert {f"rule/{o['rule']}": values[o["status"]] for o in outcomes} == {
        name: value for name, value in printed.items() if name.startswith("rule/")
    }
    assert len(outcomes) >= 10


def start_job_on_hosts(job, aws, hosts, python, tmp_path) -> list:
    """Each host's /opt/ml (in tmp_path/<host name>) laid out for `job`, and its container entry started."""
    names = [h.name for h in hosts]
    processes = []
    for host in hosts:
        host = Host(host.name, tmp_path / host.name / "opt_ml", host.interface, host.namespace)
        env = prepare_host(job, aws, host, names, tmp_path / host.name)
        processes.append((host, start_host(host, python, env)))
    return processes


@pytest.mark.skipif(namespaces_available() is not None, reason=str(namespaces_available()))
def test_a_two_instance_job_trains_one_model_with_ddp_and_exports_once(
    aws, shapes3, tmp_path, container_python
):
    overrides = [
        *backend("backend.instance_count=2"),
        "trainer=ddp",
        *TINY_JOB,
        f"data.root={shapes3}",
        "trainer.max_epochs=1",
    ]
    job = launched(tmp_path / "launch", overrides)
    assert job["ResourceConfig"]["InstanceCount"] == 2
    with network_of_hosts(2) as hosts:
        processes = start_job_on_hosts(job, aws, hosts, container_python, tmp_path)
        logs = {host.name: process.communicate(timeout=600)[0] for host, process in processes}
        codes = {host.name: process.returncode for host, process in processes}
        for host, _ in processes:
            finish_host(job, aws, host)
    assert codes == {"algo-1": 0, "algo-2": 0}, {n: log[-3000:] for n, log in logs.items()}
    first, second = tmp_path / "algo-1" / "opt_ml", tmp_path / "algo-2" / "opt_ml"
    # One model, exported by global rank 0 (algo-1) only; SageMaker uploads algo-1's /opt/ml/model.
    assert (first / "model" / "weights.pt").is_file()
    assert not (second / "model" / "weights.pt").exists()
    # Each rank read its half of the training data: 96 images, batch 16 -> 3 steps per epoch, not 6.
    checkpoint = read_checkpoint(first / "checkpoints" / job["TrainingJobName"] / "last.ckpt")
    assert checkpoint["global_step"] == 3
    metrics = json.loads((first / "output" / "data" / "metrics.json").read_text())
    assert metrics["epochs"] == 1
    # The test split was shared between the ranks and gathered: every image counted once, in the figures.
    rows = list(csv.DictReader((first / "output" / "data" / "evaluation" / "per_class_accuracy.csv").open()))
    assert sum(int(r["support"]) for r in rows) == 36
    correct = sum(int(r["correct"]) for r in rows)
    assert metrics["test/acc"] == pytest.approx(correct / 36, abs=1e-6)


def checkpoint_bytes_by_job(location: Path) -> dict[str, int]:
    """Bytes of checkpoint files per job folder of a downloaded checkpoint location (empty files left out)."""
    sizes: dict[str, int] = {}
    for path in location.rglob("*.ckpt"):
        if path.stat().st_size:
            job = path.relative_to(location).parts[0]
            sizes[job] = sizes.get(job, 0) + path.stat().st_size
    return sizes


def processes_of(group: int, script: str) -> list[int]:
    """The processes of process group `group` running `script` (train.py under the toolkit)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.getpgid(int(entry.name)) == group:
                if script.encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
        except (OSError, ProcessLookupError):
            continue  # ended meanwhile
    return found


def interrupted_job(job: dict, s3, python: Path, work: Path) -> tuple[int, str]:
    """A job whose train.py gets SIGTERM (a spot interruption) once its first last.ckpt is written; the
    toolkit's exit status and the job's log."""
    host = Host("localhost", work / "opt_ml")
    env = prepare_host(job, s3, host, [host.name], work)
    log = work / "log.txt"
    last = host.base / "checkpoints" / job["TrainingJobName"] / "last.ckpt"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(python), "-c", CONTAINER_TRAIN],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 600
        while not (last.is_file() and last.stat().st_size) and proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        for pid in processes_of(proc.pid, "train.py"):
            os.kill(pid, signal.SIGTERM)
        returncode = proc.wait(300)
    finish_host(job, s3, host)
    return returncode, log.read_text()


def test_a_spot_tuning_jobs_trials_download_at_most_one_trials_checkpoint(
    aws, shapes3, tmp_path, container_python
):
    overrides = [
        *backend("backend.spot=true"),
        "tune.objective=val/acc",
        *TINY_JOB,
        f"data.root={shapes3}",
        "backend.tuning.max_jobs=3",
    ]
    space = {
        "model.lr": {"type": "float", "low": 1e-4, "high": 1e-2},
        "trainer.max_epochs": {"type": "int", "low": 1, "high": 30},
    }
    described = launch_tuning(compose_config(tmp_path / "tune", overrides, "tune"), overrides, space)
    tuning_name = described["HyperParameterTuningJobName"]
    tuning = sagemaker_client().describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuning_name)
    location = tuning["TrainingJobDefinition"]["CheckpointConfig"]["S3Uri"]  # one for all the trials
    points = [("0.0001", "1"), ("0.001", "30"), ("0.01", "1")]  # the second is interrupted and restarted
    trials = [
        training_job_of_tuning_job(
            tuning, {"model.lr": lr, "trainer.max_epochs": epochs}, f"{tuning_name}-00{i}-a1b2c3d4"
        )
        for i, (lr, epochs) in enumerate(points, 1)
    ]
    names = [trial["TrainingJobName"] for trial in trials]
    downloads = []

    def seen_before(attempt: str) -> dict[str, int]:
        """What this attempt starts with: the whole location, downloaded as SageMaker does."""
        download_prefix(aws, location, tmp_path / "seen" / attempt)
        downloads.append(checkpoint_bytes_by_job(tmp_path / "seen" / attempt))
        return downloads[-1]

    seen_before("1")
    first = run_job(trials[0], aws, container_python, tmp_path / "trial-1")
    assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
    assert "checkpoints emptied for later trials (last.ckpt)" in first.stdout
    best = tmp_path / "trial-1" / "opt_ml" / "output" / "best-checkpoints"
    assert [p.name for p in best.glob("*.ckpt")] == ["epoch000.ckpt"]  # the best stayed out of the sync

    assert seen_before("2") == {}  # the finished trial left empty files only
    returncode, log = interrupted_job(trials[1], aws, container_python, tmp_path / "trial-2")
    assert returncode != 0 and "training interrupted by SIGTERM" in log, log[-4000:]

    assert list(seen_before("2-restart")) == [names[1]]  # its own last.ckpt, nothing of trial 1
    restart = run_job(trials[1], aws, container_python, tmp_path / "trial-2-restart")
    log = restart.stdout + restart.stderr
    assert restart.returncode == 0, log[-4000:]
    own = tmp_path / "trial-2-restart" / "opt_ml" / "checkpoints" / names[1] / "last.ckpt"
    assert f"ckpt_path={own}" in restart.stdout, log[-4000:]
    metrics = tmp_path / "trial-2-restart" / "opt_ml" / "output" / "data" / "metrics.json"
    assert json.loads(metrics.read_text())["epochs"] == 30

    assert seen_before("3") == {}
    third = run_job(trials[2], aws, container_python, tmp_path / "trial-3")
    assert third.returncode == 0, (third.stdout + third.stderr)[-4000:]
    assert seen_before("after") == {}
    # No download held more than one trial's checkpoint, and no best-so-far file ever travelled.
    assert all(len(seen) <= 1 for seen in downloads), downloads
    assert not list((tmp_path / "seen").rglob("epoch*.ckpt"))


PEER_TIMEOUT_S = 20  # short for the test; the default is conf/trainer/ddp.yaml's


@pytest.mark.skipif(namespaces_available() is not None, reason=str(namespaces_available()))
@pytest.mark.parametrize("link_down", [True, False], ids=["instance-vanished", "process-died"])
def test_a_two_instance_job_whose_peer_is_lost_fails_within_the_peer_timeout_naming_the_host(
    aws, shapes3, tmp_path, container_python, link_down
):
    overrides = [
        *backend("backend.instance_count=2"),
        "trainer=ddp",
        f"trainer.strategy.peer_timeout_s={PEER_TIMEOUT_S}",
        *TINY_JOB,
        f"data.root={shapes3}",
        "trainer.max_epochs=1000",  # still training when algo-2 is lost
    ]
    job = launched(tmp_path / "launch", overrides)
    with network_of_hosts(2) as hosts:
        (first, survivor), (second, lost) = start_job_on_hosts(job, aws, hosts, container_python, tmp_path)
        output = Output(survivor)
        assert output.wait_for("epoch=1", timeout=400), output.text[-4000:]  # training, past an epoch
        lost_at = time.monotonic()
        lose_host(second, link_down=link_down)
        survivor.wait(timeout=PEER_TIMEOUT_S + 120)
        took = time.monotonic() - lost_at
        lost.wait(timeout=30)
    log = output.text
    assert survivor.returncode != 0, log[-4000:]
    # Without the bound a vanished peer left algo-1 silent for ~15 minutes (the kernel's retransmissions).
    assert took < PEER_TIMEOUT_S + 60, (took, log[-4000:])
    how = "it does not answer, the instance is gone" if link_down else "its training process ended"
    # One line of its own (the toolkit then repeats it in its failure report).
    lines = [line for line in log.splitlines() if line.startswith("ConnectionError: lost host algo-2")]
    assert len(lines) == 1 and how in lines[0], log[-4000:]
    print(f"algo-1 stopped {took:.1f} s after algo-2 was lost")
    failure = (first.base / "output" / "failure").read_text()
    assert "lost host algo-2" in failure and how in failure
    assert not (first.base / "output" / "success").exists()


def fresh_host(job, aws, work) -> tuple[Host, dict]:
    """A new instance for an attempt of `job`: an empty /opt/ml at the same path, checkpoints synced in."""
    host = Host("localhost", work / "opt_ml")
    shutil.rmtree(host.base, ignore_errors=True)
    return host, prepare_host(job, aws, host, [host.name], work)


def steps_of(checkpoint) -> int:
    return int(read_checkpoint(checkpoint)["global_step"]) if checkpoint.is_file() else 0


@pytest.mark.skipif(namespaces_available() is not None, reason=str(namespaces_available()))
def test_a_stopped_job_never_reports_success_and_the_next_attempt_resumes_its_timed_checkpoint(
    aws, shapes3, tmp_path, container_python
):
    steps_per_epoch = 24  # 96 training images, batch 4
    overrides = [
        *backend("backend.spot=true"),
        *TINY_JOB,
        f"data.root={shapes3}",
        "data.batch_size=4",
        "trainer.max_epochs=8",
        "checkpoint_every_minutes=0.05",  # every 3 s: a checkpoint by the clock, mid-epoch
    ]
    job = launched(tmp_path / "launch", overrides)
    last = tmp_path / "job" / "opt_ml" / "checkpoints" / job["TrainingJobName"] / "last.ckpt"

    # 1. The container's own process tree: SIGTERM (docker stop) goes to bash, PID 1, and never arrives.
    host, env = fresh_host(job, aws, tmp_path / "job")
    container = start_container(container_python, env, tmp_path / "job")
    output = Output(container)
    assert output.wait_for("epoch=0", timeout=400), output.text[-4000:]
    (init,) = children(container.pid)
    os.kill(init, signal.SIGTERM)
    assert output.wait_for("epoch=1", timeout=300), output.text[-4000:]  # still training
    deadline = time.monotonic() + 120  # then docker's SIGKILL, once last.ckpt was written by the clock
    while steps_of(last) % steps_per_epoch == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    os.kill(init, signal.SIGKILL)  # PID 1 killed: the kernel kills the whole namespace
    container.wait(timeout=60)
    log = output.text
    assert "training interrupted" not in log and "metrics.json" not in log, log[-3000:]
    assert not (host.base / "output" / "success").exists()
    saved = steps_of(last)
    assert saved % steps_per_epoch != 0, saved  # mid-epoch: the checkpoint by time, not an epoch's
    finish_host(job, aws, host)

    # 2. The next attempt resumes it; a SIGTERM that reaches train.py ends it non-zero, never a success.
    host, env = fresh_host(job, aws, tmp_path / "job")
    toolkit = start_toolkit(container_python, env)
    output = Output(toolkit)
    assert output.wait_for(f"ckpt_path={last}", timeout=400), output.text[-4000:]
    assert output.wait_for("epoch=", timeout=400), output.text[-4000:]
    train = descendant_running(toolkit.pid, "train.py")
    assert train is not None
    os.kill(train, signal.SIGTERM)
    toolkit.wait(timeout=120)
    log = output.text
    assert toolkit.returncode != 0, log[-4000:]
    assert any(line.startswith("training interrupted by SIGTERM") for line in log.splitlines())
    # The toolkit's failure report quotes only lines naming a Python error: the exit status is what it keeps.
    assert "ExitCode 143" in (host.base / "output" / "failure").read_text()
    assert not (host.base / "output" / "success").exists()
    assert steps_of(last) > saved
    finish_host(job, aws, host)

    # 3. And the one after finishes the run.
    host, env = fresh_host(job, aws, tmp_path / "job")
    done = subprocess.run(
        [str(container_python), "-c", CONTAINER_TRAIN], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert f"ckpt_path={last}" in done.stdout
    metrics = json.loads((host.base / "output" / "data" / "metrics.json").read_text())
    assert metrics["epochs"] == 8
    assert (host.base / "model" / "weights.pt").is_file() and (host.base / "output" / "success").is_file()
