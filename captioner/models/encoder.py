"""Image encoder: any torchvision classification model, cut before its global pooling.

A global average pool throws away where things are, and relations such as "left of" then
cannot be learned. So the feature map is average-pooled to a small ``grid_size x grid_size`` grid and
flattened: the features keep coarse position (grid 2 keeps each quadrant), for attention to look over
and for the decoder's summary of the grid to keep or average away (:mod:`captioner.models.summary`).
"""

from __future__ import annotations

from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlparse

import torch
from torch import nn

from captioner.data.transforms import Preprocess
from captioner.errors import CaptionerError
from captioner.torchvision_import import torchvision


def classification_model_names() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


def build_backbone(name: str, weights: str | None = None) -> nn.Module:
    """A torchvision classification model by name, with weights by name (e.g. DEFAULT) or none."""
    names = classification_model_names()
    if name not in names:
        raise CaptionerError(f"unknown encoder {name!r}; torchvision classification models are: {', '.join(names)}")
    if weights is None:
        return torchvision.models.get_model(name)
    found = pretrained_weights(name, weights)
    try:
        return torchvision.models.get_model(name, weights=found)
    except (URLError, OSError, RuntimeError) as error:  # offline, a blocked host, a damaged download
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(found.url).path).name
        raise CaptionerError(
            f"cannot load the {name} weights {found.name} ({type(error).__name__}: {str(error).splitlines()[0]}); "
            f"without internet, download {found.url} elsewhere and put it at {cached} (TORCH_HOME moves it), "
            f"or train from scratch with model.encoder.weights=null") from None


def pretrained_weights(name: str, weights: str) -> torchvision.models.WeightsEnum:
    """torchvision's weights entry for a model (``DEFAULT`` or a name such as ``IMAGENET1K_V1``)."""
    choices = torchvision.models.get_model_weights(name)
    if weights == "DEFAULT":
        return choices.DEFAULT
    if weights not in choices.__members__:
        raise CaptionerError(f"encoder {name} has no weights {weights!r}; choose DEFAULT or one of: "
                             f"{', '.join(choices.__members__)}")
    return choices[weights]


def feature_map_stages(backbone: nn.Module) -> list[tuple[str, int]]:
    """Names and channels of the top-level modules that output a spatial (B, C, H, W) map at 224 px.

    Found by running the model once on a blank image (in eval mode, nothing learned changes), so it
    works for ResNets (``layer1``..``layer4``), VGG/MobileNet/EfficientNet/ConvNeXt (``features``)
    and others. Not on the ``meta`` device: its batch norm is a Python decomposition that imports
    ``torch._dynamo`` (see :mod:`captioner.torchvision_import`).
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
    training = backbone.training
    try:
        with torch.no_grad():
            backbone.eval()(torch.zeros(1, 3, 224, 224))
    finally:
        backbone.train(training)
        for hook in hooks:
            hook.remove()
    if not found:
        raise CaptionerError("this encoder has no spatial feature map (vision transformers are not supported)")
    return found


class Encoder(nn.Module):
    """Images (B, 3, H, W) -> feature vectors (B, feature_dim).

    ``stage`` cuts the backbone after that top-level module (default: the last one with a
    spatial map). An earlier stage keeps more resolution and has fewer layers to train
    (benchmarks/README.md, "encoder_speed.py" and "The demo recipe").
    """

    def __init__(self, name: str = "resnet18", weights: str | None = None, grid_size: int = 2,
                 stage: str | None = None, freeze: bool = False):
        super().__init__()
        backbone = build_backbone(name, weights)
        stages = dict(feature_map_stages(backbone))
        if stage is None:
            stage = list(stages)[-1]
        if stage not in stages:
            raise CaptionerError(f"encoder {name} has no stage {stage!r}; its stages are: {', '.join(stages)}")
        node, channels = stage, stages[stage]
        self.identity = {"name": name, "stage": stage, "grid_size": grid_size}  # what, besides weights, shapes features
        self.body = torchvision.models.feature_extraction.create_feature_extractor(
            backbone, return_nodes={node: "features"})
        self.pool = nn.AdaptiveAvgPool2d(grid_size)
        self.locations = grid_size * grid_size
        self.feature_dim = channels * self.locations  # channel-major: channel c of cell l is c * locations + l
        # Normalised features let the decoder use the image early in training from scratch
        # (as the BatchNorm on the image embedding of common Show-and-Tell implementations).
        self.norm = nn.BatchNorm1d(self.feature_dim)
        self.frozen = False
        if freeze:
            self.freeze()

    def freeze(self) -> None:
        """Train only what comes after the backbone (its BatchNorm statistics stay as loaded too)."""
        self.frozen = True
        self.body.requires_grad_(False)
        self.body.eval()

    def unfreeze(self) -> None:
        self.frozen = False
        self.body.requires_grad_(True)
        self.body.train(self.training)

    def train(self, mode: bool = True) -> "Encoder":
        super().train(mode)
        if self.frozen:
            self.body.eval()
        return self

    def grid_features(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) -> the backbone's map pooled to the grid, flattened (B, F): what a
        feature cache holds for a frozen backbone (:mod:`captioner.feature_cache`)."""
        return self.pool(self.body(images)["features"]).flatten(1)  # (B, C * grid * grid)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W), or their :meth:`grid_features` (B, F) read from a cache -> features (B, F)."""
        return self.norm(images if images.dim() == 2 else self.grid_features(images))


def encoder_preprocess(name: str, weights: str | None, image_size: int | None) -> Preprocess:
    """Pretrained weights bring their own normalisation and input size (those of their
    ``transforms()``; ``image_size`` null takes their crop size); from scratch: ImageNet statistics."""
    if weights is None:
        return Preprocess(image_size or 224)
    transform = pretrained_weights(name, weights).transforms()
    return Preprocess(image_size or transform.crop_size[0], tuple(transform.mean), tuple(transform.std))
