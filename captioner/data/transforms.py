"""Image preprocessing, shared by training and captioning (one copy, stored in checkpoints)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from captioner.torchvision_import import torchvision

transforms = torchvision.transforms

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """How images are turned into tensors for a model; saved with the model."""

    image_size: int = 64
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> Preprocess:
        return cls(int(data["image_size"]), tuple(data["mean"]), tuple(data["std"]))

    def transform(self) -> transforms.Compose:
        """RGB PIL image -> normalised float tensor (3, S, S)."""
        size = (self.image_size, self.image_size)
        return transforms.Compose(
            [
                transforms.Resize(size, antialias=True),
                transforms.ToTensor(),
                transforms.Normalize(self.mean, self.std),
            ]
        )
