"""Image encoder: any torchvision classification model, cut before its global pooling.

A global average pool throws away where things are, and relations such as "left of" then
cannot be learned (a probe with resnet18 from scratch at 64 px reached 14% exact match).
So the feature map is average-pooled to a small ``grid_size x grid_size`` grid and
flattened: the feature vector keeps coarse position (grid 2 keeps each quadrant).
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from captioner.errors import CaptionerError


def classification_model_names() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


def build_backbone(name: str, weights: str | None = None) -> nn.Module:
    """A torchvision classification model by name, with weights by name or none."""
    names = classification_model_names()
    if name not in names:
        raise CaptionerError(f"unknown encoder {name!r}; torchvision classification models are: {', '.join(names)}")
    return torchvision.models.get_model(name, weights=weights)


def feature_map_stages(backbone: nn.Module) -> list[tuple[str, int]]:
    """Names and channels of the top-level modules that output a spatial (B, C, H, W) map.

    Found by running the model on the ``meta`` device (shapes only, no compute), so it works
    for ResNets (``layer1``..``layer4``), VGG/MobileNet/EfficientNet/ConvNeXt (``features``)
    and others.
    """
    found: list[tuple[str, int]] = []
    hooks = [
        module.register_forward_hook(
            lambda _m, _i, out, name=name: found.append((name, out.shape[1]))
            if isinstance(out, torch.Tensor) and out.dim() == 4 and min(out.shape[2:]) > 1
            else None
        )
        for name, module in backbone.named_children()
    ]
    try:
        with torch.no_grad():
            backbone.to("meta").eval()(torch.empty(1, 3, 224, 224, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    if not found:
        raise CaptionerError("this encoder has no spatial feature map (vision transformers are not supported)")
    return found


class Encoder(nn.Module):
    """Images (B, 3, H, W) -> feature vectors (B, feature_dim).

    ``stage`` cuts the backbone after that top-level module (default: the last one with a
    spatial map). An earlier stage keeps more resolution and has fewer layers to train: with
    resnet18 from scratch on the 64 px synthetic scenes, ``layer3`` learned object shape in
    about a third of the steps ``layer4`` needed (benchmarks/README.md).
    """

    def __init__(self, name: str = "resnet18", weights: str | None = None, grid_size: int = 2,
                 stage: str | None = None):
        super().__init__()
        with torch.device("meta"):  # shapes only: no memory, no weight initialisation
            stages = dict(feature_map_stages(build_backbone(name)))
        if stage is None:
            stage = list(stages)[-1]
        if stage not in stages:
            raise CaptionerError(f"encoder {name} has no stage {stage!r}; its stages are: {', '.join(stages)}")
        node, channels = stage, stages[stage]
        backbone = build_backbone(name, weights)
        self.body = create_feature_extractor(backbone, return_nodes={node: "features"})
        self.pool = nn.AdaptiveAvgPool2d(grid_size)
        self.feature_dim = channels * grid_size * grid_size
        # Normalised features let the decoder use the image early in training from scratch
        # (as the BatchNorm on the image embedding of common Show-and-Tell implementations).
        self.norm = nn.BatchNorm1d(self.feature_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feature_map = self.body(images)["features"]  # (B, C, h, w)
        return self.norm(self.pool(feature_map).flatten(1))  # (B, C * grid * grid)
