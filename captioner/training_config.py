"""How a model is trained: the ``trainer`` config group, checked as it is built.

Apart from :mod:`captioner.training` so that the commands can check it before ``torch`` is imported."""

from __future__ import annotations

from dataclasses import dataclass, field

from captioner.errors import CaptionerError

BASELINES = ("greedy", "mean")


@dataclass
class ScstConfig:
    """``trainer.scst``: captions sampled per image, the baseline, the sampling temperature."""

    samples: int = 5
    baseline: str = "greedy"  # greedy: the greedy caption's reward | mean: the image's other samples'
    temperature: float = 1.0

    def __post_init__(self):
        if self.baseline not in BASELINES:
            raise CaptionerError(f"trainer.scst.baseline must be one of {', '.join(BASELINES)}, got {self.baseline!r}")
        if self.samples < (2 if self.baseline == "mean" else 1):
            raise CaptionerError(f"trainer.scst.samples={self.samples}: the {self.baseline} baseline needs at least "
                                 f"{2 if self.baseline == 'mean' else 1}")
        if self.temperature <= 0:
            raise CaptionerError(f"trainer.scst.temperature must be > 0, got {self.temperature}")


@dataclass
class TrainerConfig:
    """The ``trainer`` config group (``conf/trainer/default.yaml``)."""

    device: str = "auto"  # auto | cpu | cuda
    max_epochs: int = 10
    max_steps: int | None = None  # stop after this many optimizer steps (smoke runs)
    batch_size: int = 32
    lr: float = 3e-3
    encoder_lr: float | None = None  # the encoder's own learning rate (None: lr)
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    warmup_steps: int = 100
    checkpoint_every_steps: int = 500
    resume: bool = False
    num_workers: int = 0
    cache_images: bool = False  # keep preprocessed images in memory after their first decode (num_workers 0)
    amp: bool = True  # mixed precision: bf16 (or fp16) on CUDA, bf16 on CPUs with native bf16
    channels_last: bool = True  # conv memory layout (faster with autocast; benchmarks/README.md)
    val_batch_size: int = 128
    captions_per_image: str = "all"  # all: every reference per image and step; one: one per epoch
    reverse_captions_per_image: str = "all"  # a bidirectional decoder's reverse half: all its captions, or one
    word_loss_weight: float = 1.0  # auxiliary loss: predict the captions' words from the image (0: off)
    strategy: str = "single"  # single | ddp (under torchrun; batch_size is then the global batch)
    finetune_after_epochs: int | None = None  # a frozen encoder (model.encoder.freeze) trains from this epoch on
    ema_decay: float = 0.0  # > 0: validate and keep an exponential moving average of the weights
    monitor: str = "val_CIDEr"  # the validation figure that chooses model.pt: val_loss, val_CIDEr, val_Bleu_4 ...
    monitor_mode: str = "max"  # min | max: whether lower or higher is better
    val_max_images: int = 5000  # validation images captioned and scored each epoch (0: the loss alone)
    val_meteor: bool = False  # METEOR in validation too (a Java process each epoch)
    feature_cache: bool = False  # a frozen encoder runs once per image; the epochs read its cached features
    feature_cache_dir: str | None = None  # where caches live (None: $XDG_CACHE_HOME/captioner/features)
    tensorboard: bool = False  # also write the curve, learning rates and images/s as TensorBoard event files
    objective: str = "xe"  # xe: teacher forcing (cross-entropy) | scst: self-critical training on CIDEr-D
    init_from: str | None = None  # a model.pt whose model, vocabulary and preprocessing this run starts from
    scst: ScstConfig = field(default_factory=ScstConfig)

    def __post_init__(self):
        if self.monitor_mode not in ("min", "max"):
            raise CaptionerError(f"trainer.monitor_mode must be min or max, got {self.monitor_mode!r}")
        if self.objective not in ("xe", "scst"):
            raise CaptionerError(f"trainer.objective must be xe or scst, got {self.objective!r}")
        if self.reverse_captions_per_image not in ("all", "one"):
            raise CaptionerError("trainer.reverse_captions_per_image must be all or one, "
                                 f"got {self.reverse_captions_per_image!r}")
        if self.objective == "scst" and not self.init_from:
            raise CaptionerError("trainer.objective=scst fine-tunes a trained model: give trainer.init_from=MODEL.pt")
        if self.objective == "scst" and self.captions_per_image != "all":
            raise CaptionerError("trainer.objective=scst scores samples against every reference of the image: "
                                 "set trainer.captions_per_image=all")
        if self.monitor != "val_loss" and self.val_max_images <= 0:
            raise CaptionerError(f"trainer.monitor={self.monitor}: with trainer.val_max_images="
                                 f"{self.val_max_images} validation reports only val_loss")
        if self.cache_images and self.num_workers:
            raise CaptionerError("trainer.cache_images needs trainer.num_workers=0: "
                                 "a worker's cache is lost when the worker ends with its epoch")
