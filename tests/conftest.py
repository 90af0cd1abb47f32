"""Shared fixtures: the real Hydra config composed from conf/, and small self-made data sets."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from dogbreed.data.embedded import generate_dataset

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Generated data and torchvision's weight cache go to a per-session temp dir, never to ~/.cache.
    cache = tmp_path_factory.getbasetemp() / "cache"
    monkeypatch.setenv("DOGBREED_CACHE", str(cache))
    monkeypatch.setenv("TORCH_HOME", str(cache / "torch"))
    # logger=mlflow's store (conf/logger/mlflow.yaml reads it) goes there too, never to the checkout.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{cache / 'mlflow.db'}")


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    # A serving engine loaded in this process sets torch's thread count (as a server should); a test must
    # not leave it to the tests after it, whose training and timing-based rules depend on it.
    import torch

    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def compose_config(run_dir: Path | str, overrides: list[str] = (), config_name: str = "train") -> DictConfig:
    """The real config from conf/, as train.py would see it, with the run landing in `run_dir`."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name, overrides=[f"run_dir={run_dir}", *overrides])


# A tiny, fast training setup: ResNet18 from scratch at 32 px on the caller's data, no workers, no bars.
# Tests that freeze part of it (model.freeze=head|layer4) test mechanics, not accuracy: the random frozen
# backbone is allowed on purpose.
TINY = [
    "model=resnet18",
    "model.weights=null",
    "model.freeze=all",
    "model.allow_random_frozen_backbone=true",
    "model.lr=1e-3",
    "data.image_size=32",
    "data.min_crop_scale=0.5",
    "data.batch_size=16",
    "data.num_workers=0",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.accelerator=cpu",
    # The optimised inference artifact adds seconds to each export; tests of it turn it on themselves.
    "onnx.enabled=false",
]


@pytest.fixture(scope="session")
def shapes3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-class ImageFolder data set with train/ valid/ test/ (not the embedded 6-class one)."""
    root = tmp_path_factory.mktemp("data") / "shapes3"
    return generate_dataset(
        root, num_classes=3, images_per_class={"train": 32, "valid": 12, "test": 12}, image_size=32, seed=7
    )


@pytest.fixture(scope="session")
def trained_run(shapes3: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real training run on shapes3, shared by the tests that read its outputs."""
    from dogbreed.training.fit import fit

    run_dir = tmp_path_factory.mktemp("run")
    fit(compose_config(run_dir, [*TINY, f"data.root={shapes3}", "trainer.max_epochs=4"]))
    return run_dir


# A tiny net answers with flat probabilities, where INT8 flips more top-1s than on a trained ResNet50: these
# limits let its INT8 version through so that serving it can be tested; refusal is tested with strict ones.
LOOSE_INT8 = ["onnx.parity.int8.max_prob_diff=0.5", "onnx.parity.int8.min_top1_agreement=0.5"]


@pytest.fixture(scope="session")
def optimized_run(shapes3: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The exported model directory of a tiny training run with onnx.enabled=true (fp32 and INT8 kept)."""
    from dogbreed.training.fit import fit

    run_dir = tmp_path_factory.mktemp("optimized-run")
    overrides = [
        *TINY,
        f"data.root={shapes3}",
        "trainer.max_epochs=3",
        "onnx.enabled=true",
        "onnx.calibration_size=48",
        "onnx.parity_size=36",
        *LOOSE_INT8,
    ]
    fit(compose_config(run_dir, overrides))
    return run_dir / "model"


CLOSED_PORT = "http://127.0.0.1:9"  # nothing listens: any AWS request that really went out would fail


@pytest.fixture
def no_aws(monkeypatch, tmp_path):
    """No credentials anywhere, and every AWS endpoint pointed at a closed port."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", CLOSED_PORT)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")


MOTO_BUCKET = "dogbreed-moto"


@pytest.fixture(scope="module")
def moto_endpoint():
    """A moto server on 127.0.0.1 answering the AWS APIs moto implements (AWS cannot be reached here)."""
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()  # returns once the server listens
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_endpoint, monkeypatch, tmp_path):
    """Dummy credentials, every client pointed at moto, and MOTO_BUCKET in place; returns an S3 client."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=MOTO_BUCKET)
    return s3


# The tests that run the Docker image go last: CI starts docker/build.sh before the tests, and the image
# builds while the rest run (the tests' own build.sh waits for that build and finds the image up to date).
IMAGE_TEST_FILES = ("test_docker_image.py", "test_sagemaker_local_mode.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name in IMAGE_TEST_FILES)  # stable: the rest keep their order
