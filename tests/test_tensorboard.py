"""logger=tensorboard, read back with TensorBoard's own event reader: the confusion matrix and a grid of test
predictions as images, the HPARAMS tab with the run's real final metrics (no placeholder hp_metric), and
weight and gradient histograms with debugger=on only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dogbreed.training.fit import fit
from tests.conftest import TINY, compose_config

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing import event_accumulator  # noqa: E402
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402

EVERYTHING = {
    event_accumulator.IMAGES: 0,
    event_accumulator.HISTOGRAMS: 0,
    event_accumulator.SCALARS: 0,
    event_accumulator.TENSORS: 0,
}


def _train(run_dir: Path, shapes3: Path, extra: list[str]) -> event_accumulator.EventAccumulator:
    overrides = [*TINY, f"data.root={shapes3}", "trainer.max_epochs=1", "logger=tensorboard", *extra]
    fit(compose_config(run_dir, overrides))
    (events_dir,) = (run_dir / "tensorboard").glob("version_*")
    return event_accumulator.EventAccumulator(str(events_dir), size_guidance=EVERYTHING).Reload()


@pytest.fixture(scope="module")
def with_debugger(shapes3, tmp_path_factory) -> tuple[Path, event_accumulator.EventAccumulator]:
    run_dir = tmp_path_factory.mktemp("tb_debugger")
    return run_dir, _train(run_dir, shapes3, ["debugger=on", "callbacks.debugger.save_interval=2"])


@pytest.mark.slow
def test_images_and_real_hparams_metrics_in_tensorboard(with_debugger):
    run_dir, events = with_debugger
    tags = events.Tags()
    confusion = events.Images("test/confusion_matrix")
    assert len(confusion) == 1 and confusion[0].width >= 300 and confusion[0].height >= 300
    # A grid of the 36 test images' first 32 (8 columns, 4 rows of titled thumbnails).
    (grid,) = events.Images("test/predictions")
    assert grid.width >= 8 * 96 and grid.height >= 4 * 96 and len(grid.encoded_image_string) > 10_000

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "hp_metric" not in tags["scalars"]
    assert events.Scalars("hp/test_acc")[-1].value == pytest.approx(metrics["test/acc"])
    assert events.Scalars("hp/val_loss")[-1].value == pytest.approx(metrics["val/loss"])
    hparams = {
        tag: plugin_data_pb2.HParamsPluginData.FromString(content)
        for tag, content in events.PluginTagToContent("hparams").items()
    }
    experiment = hparams["_hparams_/experiment"].experiment
    assert {m.name.tag for m in experiment.metric_infos} >= {"hp/test_acc", "hp/val_loss"}
    session = hparams["_hparams_/session_start_info"].session_start_info
    assert session.hparams["model/lr"].number_value == pytest.approx(1e-3)
    assert session.hparams["model/arch"].string_value == "resnet18"


@pytest.mark.slow
def test_weight_and_gradient_histograms_with_the_debugger_only(with_debugger, shapes3, tmp_path):
    _, events = with_debugger
    histograms = events.Tags()["histograms"]
    assert "weights/net.fc.1.weight" in histograms and "gradients/net.fc.1.weight" in histograms
    # At the debugger's collection steps (every 2 of the 6 training steps), over real spreads of values.
    steps = [event.step for event in events.Histograms("gradients/net.fc.1.weight")]
    assert steps == [0, 2, 4]
    last = events.Histograms("weights/net.fc.1.weight")[-1].histogram_value
    assert last.num > 0 and last.max > last.min

    without = _train(tmp_path, shapes3, [])
    assert without.Tags()["histograms"] == []
    assert "test/confusion_matrix" in without.Tags()["images"]
