"""The exported model as an MLflow model, through a real `mlflow server` on 127.0.0.1: train.py and a study
log it, MLflow's own pyfunc loader reads it back from the registry, and it answers as the project's
predictor does. The same runs' output is checked for noise: plugin warnings, doubled lines, quantiser
chatter."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dogbreed.config.errors import ConfigValueError
from dogbreed.config.schema import check_train_config
from tests.conftest import LOOSE_INT8, ROOT, TINY, compose_config
from tests.http_client import free_port

mlflow = pytest.importorskip("mlflow")

HEADER_WARNING = "resolving request headers"


def wait_for_health(url: str, server: subprocess.Popen, log: Path, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if server.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no answer from /health in {seconds} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)  # polling interval; readiness is the /health answer


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """`mlflow server` with a SQLite store and local artifacts it serves itself (--serve-artifacts)."""
    root = tmp_path_factory.mktemp("mlflow-server")
    url = f"http://127.0.0.1:{free_port()}"
    log = root / "server.log"
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1"]
    command += [
        "--port",
        url.rsplit(":", 1)[1],
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
    ]
    command += ["--artifacts-destination", str(root / "artifacts"), "--serve-artifacts"]
    # The server's job runner (GenAI jobs) needs packages the mlflow extra leaves out; nothing here uses it.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log, "w") as out:
        # Its own session: the server starts uvicorn in a child process, stopped with it below.
        server = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        wait_for_health(url, server, log)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def train(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env["PYTHONPATH"] = str(ROOT / "src")
    env["PYTHONUNBUFFERED"] = "1"  # stdout and stderr interleave in the order they were written
    return subprocess.run(
        [sys.executable, "train.py", *TINY, f"hydra.run.dir={run_dir}", *overrides],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=1200,
    )


LOG_PREFIX = re.compile(r"^(\[[^\]]*\]\[[^\]]*\]\[[A-Z]+\] - |[A-Z]+: )")


def doubled_lines(output: str) -> list[str]:
    """Log messages printed twice in a row: the same message, whatever the handler's format around it."""
    messages = [LOG_PREFIX.sub("", line).strip() for line in output.splitlines()]
    return [m for m, following in zip(messages, messages[1:], strict=False) if m and m == following]


def export_chatter(output: str) -> list[str]:
    """Lines printed while the model was exported (from `exported model to` to the artifact's last line)
    that are not the project's own log lines."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if "exported model to" in line)
    end = max(i for i, line in enumerate(lines) if "inference artifact" in line)
    return [line for line in lines[start : end + 1] if not re.match(r"\[[^\]]*\]\[dogbreed\.", line)]


def without_pythonpath() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def image_files(root: Path, count: int) -> list[Path]:
    return sorted(root.glob("test/*/*"))[:count]


@pytest.mark.slow
def test_train_logs_a_registered_pyfunc_model_that_answers_as_the_predictor(mlflow_server, shapes3, tmp_path):
    run_dir = tmp_path / "run"
    done = train(
        run_dir,
        f"data.root={shapes3}",
        "trainer.max_epochs=1",
        "logger=mlflow",
        f"logger.mlflow.tracking_uri={mlflow_server}",
        "logger.mlflow.registered_model_name=dogbreed-test",
        # The INT8 artifact is made, to see that calibration prints nothing of its own.
        "onnx.enabled=true",
        "onnx.calibration_size=32",
        "onnx.parity_size=24",
        *LOOSE_INT8,
    )
    assert done.returncode == 0, done.stdout[-4000:]
    output = done.stdout
    # Quiet: no plugin warning per request, each line once, no quantiser chatter.
    assert output.count(HEADER_WARNING) == 0, output[-4000:]
    assert doubled_lines(output) == [], output[-4000:]
    assert len(export_chatter(output)) <= 2, export_chatter(output)
    assert "registered as dogbreed-test version 1" in output
    assert output.count(f"MLflow run: {mlflow_server}/#/experiments/") == 1 and "View run" not in output

    mlflow.set_tracking_uri(mlflow_server)
    pyfunc = mlflow.pyfunc.load_model("models:/dogbreed-test/1")
    from dogbreed.modeldir.reader import load_model

    own = load_model(run_dir / "model")
    paths = image_files(shapes3, 5)
    expected = own.predict(paths, topk=3)
    import pandas as pd

    for given in ([p.read_bytes() for p in paths], pd.DataFrame({"image": [str(p) for p in paths]})):
        answers = pyfunc.predict(given, params={"topk": 3})
        assert len(answers) == len(paths)
        for answer, want in zip(answers, expected, strict=True):
            assert [a["index"] for a in answer["topk"]] == [p.index for p in want]
            assert [a["label"] for a in answer["topk"]] == [p.label for p in want]
            for a, p in zip(answer["topk"], want, strict=True):
                assert a["probability"] == pytest.approx(p.probability, abs=1e-6)
    signature = pyfunc.metadata.signature
    assert signature.params.to_dict()[0]["name"] == "topk" and signature.outputs.input_names() == ["topk"]

    # Its requirements name what its code imports; the project itself travels as its code, not a package.
    requirements = Path(mlflow.pyfunc.get_model_dependencies("models:/dogbreed-test/1")).read_text()
    names = {re.split("[=<>]", line)[0].lower() for line in requirements.split()}
    assert {"mlflow", "torch", "torchvision", "pillow", "numpy"} <= names and "dogbreed" not in names
    loaded_from = subprocess.run(
        [
            sys.executable,
            "-c",
            # dogbreed imported after loading: the copy the model carries, not the installed one.
            "import mlflow; m = mlflow.pyfunc.load_model('models:/dogbreed-test/1'); "
            "import dogbreed; print(dogbreed.__file__)",
        ],
        cwd=tmp_path,  # not the checkout: no src/ on the path
        env={**without_pythonpath(), "MLFLOW_TRACKING_URI": mlflow_server},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert loaded_from.returncode == 0, loaded_from.stderr[-3000:]
    assert "/code/dogbreed/" in loaded_from.stdout.splitlines()[-1], loaded_from.stdout


@pytest.mark.slow
def test_a_study_logs_only_the_models_it_keeps(mlflow_server, shapes3, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from dogbreed.tuning.study import run_study

    monkeypatch.chdir(tmp_path)
    cfg = compose_config(
        tmp_path,
        [
            *TINY,
            f"data.root={shapes3}",
            "data.images_per_class=8",
            "search=smoke",
            "trainer.max_epochs=1",
            "tune.n_trials=2",
            "tune.pruner=null",
            "tune.keep_models=1",
            "logger=mlflow",
            f"logger.mlflow.tracking_uri={mlflow_server}",
            "logger.mlflow.experiment_name=study",
            "logger.mlflow.registered_model_name=dogbreed-study",
        ],
        config_name="tune",
    )
    cfg.search = {"model.lr": {"type": "categorical", "choices": [1.0e-3, 3.0e-3]}}
    study = run_study(cfg)

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("study").experiment_id
    models = client.search_logged_models([experiment])
    (model,) = models  # the best trial's, not the other one's
    trial_runs = {
        r.data.tags["optuna.trial"]: r
        for r in client.search_runs([experiment])
        if "optuna.trial" in r.data.tags
    }
    assert len(trial_runs) == 2
    assert model.source_run_id == trial_runs[str(study.best_trial.number)].info.run_id
    (version,) = client.search_model_versions("name='dogbreed-study'")
    assert version.version == "1" and version.source == f"models:/{model.model_id}"
    assert model.status == "READY"


def test_registered_model_name_needs_the_model_logged(tmp_path):
    cfg = compose_config(
        tmp_path,
        [
            "logger=mlflow",
            "logger.mlflow.registered_model_name=dogs",
            "logger.mlflow.log_exported_model=false",
        ],
    )
    with pytest.raises(ConfigValueError, match="registered_model_name=dogs .*log_exported_model=false"):
        check_train_config(cfg)
    cfg = compose_config(tmp_path, ["logger=mlflow", "logger.mlflow.registered_model_name=' '"])
    with pytest.raises(ConfigValueError, match="registered_model_name"):
        check_train_config(cfg)


def test_the_pyfunc_reads_images_from_a_list_a_dataframe_or_one_image():
    import pandas as pd

    from dogbreed.tracking.mlflow_pyfunc import images_of

    assert images_of([b"a", "b.jpg"]) == [b"a", "b.jpg"]
    assert images_of(pd.DataFrame({"image": [b"a"], "other": [1]})) == [b"a"]
    assert images_of(pd.DataFrame({0: ["x.png"]})) == ["x.png"]
    assert images_of(b"a") == [b"a"] and images_of({"image": [b"a"]}) == [b"a"]
    with pytest.raises(ValueError, match="column named 'image'"):
        images_of(pd.DataFrame({"a": [1], "b": [2]}))


def test_the_sagemaker_header_plugin_applies_to_arn_tracking_uris_only(caplog):
    """sagemaker-mlflow's request-header provider, as installed: quiet on other tracking servers."""
    from mlflow.tracking.request_header.registry import resolve_request_headers

    from dogbreed.tracking.mlflow_headers import quiet_request_header_plugins, sagemaker_header_providers

    if not sagemaker_header_providers():
        pytest.skip("sagemaker-mlflow is not installed")
    previous = mlflow.get_tracking_uri()
    try:
        mlflow.set_tracking_uri("http://127.0.0.1:9")
        quiet_request_header_plugins()
        with caplog.at_level(logging.WARNING):
            assert "x-mlflow-sm-tracking-server-arn" not in resolve_request_headers()
        assert HEADER_WARNING not in caplog.text
        arn = "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/dogbreed"
        mlflow.set_tracking_uri(arn)
        assert resolve_request_headers()["x-mlflow-sm-tracking-server-arn"] == arn
    finally:
        mlflow.set_tracking_uri(previous)
