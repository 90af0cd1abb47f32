"""Grad-CAM against a computation written out by hand, its PNG, and where it lies on the photo."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from dogbreed.data.preprocessing import Preprocessing
from dogbreed.model.gradcam import crop_fraction, gradcam, heatmap_png, heatmap_rgba, network_view, overlay
from dogbreed.model.network import build_network


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_network("resnet18", 4, None).eval()


def by_hand(net, batch: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """Grad-CAM from the paper's definition, calling the ResNet's stages one by one (no hooks)."""
    x = net.maxpool(net.relu(net.bn1(net.conv1(batch))))
    activations = net.layer4(net.layer3(net.layer2(net.layer1(x))))
    logits = net.fc(torch.flatten(net.avgpool(activations), 1))
    maps = []
    for i, c in enumerate(classes):
        (grad,) = torch.autograd.grad(logits[i, c], activations, retain_graph=True)
        weights = grad[i].mean(dim=(1, 2))  # one weight per channel: the gradient averaged over space
        cam = torch.relu((weights[:, None, None] * activations[i]).sum(dim=0)).detach()
        maps.append(cam / cam.max() if cam.max() > 0 else cam)
    return torch.stack(maps)


def test_gradcam_matches_the_definition_for_each_image_and_class(net):
    batch = torch.randn(3, 3, 96, 96)
    classes = [0, 3, 1]
    cams = gradcam(net, batch, classes)
    assert cams.shape == (3, 3, 3)  # layer4 of a ResNet at 96 px: 3 x 3 cells
    assert torch.allclose(cams, by_hand(net, batch, classes), atol=1e-5)
    assert cams.amin() >= 0 and torch.allclose(cams.flatten(1).amax(dim=1), torch.ones(3))
    # another class draws another map from the same activations
    assert not torch.allclose(gradcam(net, batch[:1], [2]), cams[:1], atol=1e-3)
    assert not any(p.grad is not None for p in net.parameters())  # no gradient left on the weights


def test_heatmap_is_a_png_hotter_and_more_opaque_where_the_map_is_high():
    cam = torch.tensor([[0.0, 1.0], [0.25, 0.5]])
    png = Image.open(io.BytesIO(heatmap_png(cam, 64)))
    assert png.format == "PNG" and png.mode == "RGBA" and png.size == (64, 64)
    rgba = np.asarray(png).astype(int)
    cold, hot = rgba[2, 2], rgba[2, 61]  # the corners of the cells 0.0 and 1.0
    assert cold[2] > cold[0] and hot[0] > hot[2]  # blue where cold, red where hot
    assert hot[3] == 255 and cold[3] < 100
    assert np.array_equal(np.asarray(png), heatmap_rgba(cam, 64))


def test_network_view_is_the_crop_the_transform_feeds_the_network():
    prep = Preprocessing(crop_size=56, resize_size=64)
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 160, 3), np.uint8))
    view = network_view(photo, prep)
    assert view.size == (56, 56)
    normalised = prep.eval_transform()(photo)
    mean, std = torch.tensor(prep.mean)[:, None, None], torch.tensor(prep.std)[:, None, None]
    from_view = (torch.from_numpy(np.array(view)).permute(2, 0, 1).float() / 255 - mean) / std
    assert (from_view - normalised).abs().max() < 0.05  # the same pixels, up to 8-bit rounding
    assert crop_fraction(prep) == 56 / 64
    blended = overlay(view, torch.ones(2, 2))
    assert blended.size == view.size and blended.mode == "RGB" and blended != view
