"""Pretrained weights through torchvision's real loading path, offline errors, freeze policies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torchvision.models import ResNet18_Weights, resnet18

from dogbreed.model.network import WeightsUnavailableError, apply_freeze, build_network


def _torchvision_cache_file() -> Path:
    # Where torchvision's get_state_dict looks before downloading: $TORCH_HOME/hub/checkpoints/<file>.
    return Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / Path(ResNet18_Weights.DEFAULT.url).name


@pytest.fixture
def offline(monkeypatch):
    # A proxy on a closed loopback port: any download attempt fails at once, as it would offline.
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)


def test_imagenet_weights_load_from_torchvision_cache(offline):
    reference = resnet18().state_dict()  # stands in for the ImageNet file we cannot download here
    path = _torchvision_cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(reference, path)
    try:
        net = build_network("resnet18", num_classes=4, weights="DEFAULT")
    finally:
        path.unlink()
    state = net.state_dict()
    assert torch.equal(state["layer1.0.conv1.weight"], reference["layer1.0.conv1.weight"])
    assert torch.equal(state["bn1.running_var"], reference["bn1.running_var"])
    assert net.fc[-1].out_features == 4


def test_offline_without_cached_weights_names_the_way_out(offline):
    assert not _torchvision_cache_file().exists()
    with pytest.raises(WeightsUnavailableError) as info:
        build_network("resnet18", num_classes=4, weights="DEFAULT")
    message = str(info.value)
    assert "model.weights=null" in message and "resnet18-f37072fd.pth" in message


def test_local_checkpoint_path_and_unknown_names(tmp_path):
    reference = resnet18().state_dict()
    path = tmp_path / "mine.pth"
    torch.save(reference, path)
    net = build_network("resnet18", num_classes=3, weights=str(path))
    assert torch.equal(net.state_dict()["conv1.weight"], reference["conv1.weight"])
    with pytest.raises(WeightsUnavailableError, match="IMAGENET1K_V1"):
        build_network("resnet18", num_classes=3, weights="IMAGENET_V9")
    with pytest.raises(WeightsUnavailableError, match="no such checkpoint file"):
        build_network("resnet18", num_classes=3, weights=str(tmp_path / "missing.pth"))
    with pytest.raises(WeightsUnavailableError, match="does not fit resnet50"):
        build_network("resnet50", num_classes=3, weights=str(path))


@pytest.mark.parametrize(
    ("policy", "trainable_prefixes"),
    [("head", {"fc"}), ("layer4", {"fc", "layer4"}), ("all", {"conv1", "bn1", "layer1", "layer4", "fc"})],
)
def test_freeze_policies(policy, trainable_prefixes):
    net = build_network("resnet18", num_classes=5, head_hidden=16, dropout=0.2)
    apply_freeze(net, policy)
    trained = {name.split(".")[0] for name, p in net.named_parameters() if p.requires_grad}
    assert trainable_prefixes <= trained
    if policy != "all":
        assert trained == trainable_prefixes
    assert len(net.fc) == 4, "two-layer head with dropout"
