"""The torch network: a torchvision ResNet with a new head, its pretrained weights and what trains."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.error import URLError

import torch
from torch import nn
from torchvision.models import get_model, get_model_weights

from dogbreed.config.choices import ARCHES, FREEZE_POLICIES
from dogbreed.config.errors import ConfigValueError, UserError
from dogbreed.model.checkpoints import CheckpointError, read_checkpoint


class WeightsUnavailableError(UserError, RuntimeError):
    """Pretrained weights could not be fetched or read; the message names the override that avoids it."""


def build_head(
    in_features: int, num_classes: int, hidden: int | None = None, dropout: float = 0.0
) -> nn.Module:
    """One Linear layer, or (with `hidden`) Linear-ReLU-Dropout-Linear."""
    if not hidden:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_classes))
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )


def load_backbone_weights(arch: str, weights: str | None) -> dict[str, torch.Tensor] | None:
    """The state dict named by `weights`: a torchvision weights name ("DEFAULT", "IMAGENET1K_V2"),
    a local checkpoint path, or None for random initialisation."""
    if weights is None or str(weights).lower() in ("null", "none", ""):
        return None
    if os.sep in str(weights) or str(weights).endswith((".pt", ".pth", ".ckpt")):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsUnavailableError(f"model.weights={weights}: no such checkpoint file")
        try:
            state = read_checkpoint(path)  # a Lightning checkpoint or a plain state dict
        except CheckpointError as exc:
            raise CheckpointError(f"model.weights={weights}: {exc}") from None
        return state.get("state_dict", state)
    enum = get_model_weights(arch)
    try:
        spec = enum[str(weights).upper()]
    except KeyError:
        names = ", ".join(["DEFAULT", *enum.__members__])
        raise WeightsUnavailableError(f"model.weights={weights} is not one of {names} for {arch}") from None
    try:
        # torchvision's own path: reads $TORCH_HOME/hub/checkpoints/<file> or downloads it there.
        return spec.get_state_dict(progress=True, check_hash=True)
    except (URLError, OSError, RuntimeError) as exc:
        cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(spec.url).name
        raise WeightsUnavailableError(
            f"cannot fetch {arch} weights {spec} from {spec.url} ({exc}). Offline, place the file at "
            f"{cache}, pass a local file with model.weights=/path/to/{Path(spec.url).name}, "
            "or train from scratch with model.weights=null."
        ) from exc


def build_network(
    arch: str = "resnet50",
    num_classes: int = 133,
    weights: str | None = None,
    head_hidden: int | None = None,
    dropout: float = 0.0,
) -> nn.Module:
    """A torchvision ResNet whose `fc` is replaced by a new head for `num_classes` classes."""
    if arch not in ARCHES:
        raise ConfigValueError(f"model.arch={arch} is not one of {', '.join(ARCHES)}")
    net = get_model(arch, weights=None)
    state = load_backbone_weights(arch, weights)
    if state is not None:
        # A checkpoint of our own exported model carries a different head: keep only the backbone.
        backbone = {k: v for k, v in state.items() if not k.startswith("fc.")}
        try:
            missing, unexpected = net.load_state_dict(backbone, strict=False)
        except RuntimeError as exc:  # shape mismatches: another architecture's weights
            first = str(exc).splitlines()[1:2] or [str(exc)]
            raise WeightsUnavailableError(
                f"model.weights={weights} does not fit {arch}: {first[0].strip()}"
            ) from exc
        if unexpected or any(not k.startswith("fc.") for k in missing):
            raise WeightsUnavailableError(
                f"model.weights={weights} does not fit {arch}: "
                f"missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
    net.fc = build_head(net.fc.in_features, num_classes, head_hidden, dropout)
    return net


def apply_freeze(net: nn.Module, policy: str) -> None:
    """`head`: train only the new head; `layer4`: the last block and the head; `all`: everything."""
    if policy not in FREEZE_POLICIES:
        raise ConfigValueError(f"model.freeze={policy} is not one of {', '.join(FREEZE_POLICIES)}")
    trainable = {"head": ("fc.",), "layer4": ("fc.", "layer4."), "all": ("",)}[policy]
    for name, param in net.named_parameters():
        param.requires_grad = name.startswith(trainable)


def frozen_batchnorm_eval(net: nn.Module) -> None:
    """Keep BatchNorm layers whose parameters are frozen in eval mode, so their running stats stay put."""
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in module.parameters()
        ):
            module.eval()
