"""The COCO recipes at COCO's size: built, trained, validated and captioned on a stand-in of COCO's shape.

    .venv/bin/python benchmarks/coco_scale.py [--work /tmp/coco_scale] [--steps 4] [--device auto] [--distinct 2000]

Writes the stand-in once (``coco_standin.py``: 123,287 images in Karpathy's format, ~9,500 words at
``min_count`` 5, 640x480 JPEGs), then measures, each part in a process of its own (so its peak memory
is its own): reading the split file and building the vocabulary and the CIDEr-D document frequencies
from all 566k training captions; then for each recipe of ``conf/experiment/coco_*.yaml`` with random
weights (``model.encoder.weights=null``): parameters, checkpoint size and forward FLOPs per image; the
feature cache's extraction rate and size; ``--steps`` optimizer steps of each of its phases through the
real ``Trainer`` (frozen from the cache, fine-tuning the encoder on images, self-critical); one
validation of 5,000 images (teacher-forced loss, greedy captions, the coco-caption metrics); captioning
JPEG files with the recipe's beam. It ends with one table per recipe and the extrapolated time of an
epoch and of the whole recipe on this machine. Loader processes: the recipe's, at most the cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import coco_standin  # noqa: E402

RECIPES = ("coco_show_tell", "coco_attention", "coco_show_tell_scst")
PAPERS = {"coco_show_tell": 37e6, "coco_attention": 45e6, "coco_show_tell_scst": 37e6}  # with ResNet-50
TRAIN_IMAGES, VAL_IMAGES, TEST_IMAGES = 113_287, 5_000, 5_000


# --- the parts, each run in a child process ----------------------------------------------------------------

def compose_recipe(recipe: str, work: Path, device: str, overrides: tuple[str, ...] = ()) -> dict:
    """The recipe's settings as ``captioner-train experiment=RECIPE`` composes them, on the stand-in."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from captioner.cli.config import CONFIG_PATH, typed
    from captioner.decode_options import DecodeOptions
    from captioner.training_config import TrainerConfig

    with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
        start = [f"trainer.init_from={work / 'coco_show_tell.pt'}"] if recipe.endswith("scst") else []
        cfg = compose("train", overrides=[f"experiment={recipe}", "model.encoder.weights=null",
                                          f"trainer.device={device}", f"trainer.feature_cache_dir={work / 'features'}",
                                          *start, *overrides])
    trainer = typed(TrainerConfig, cfg.trainer, "trainer")
    trainer = dataclasses.replace(trainer, num_workers=min(trainer.num_workers, os.cpu_count() or 1))
    return {"encoder": OmegaConf.to_container(cfg.model.encoder), "decoder": OmegaConf.to_container(cfg.model.decoder),
            "trainer": trainer, "decode": typed(DecodeOptions, cfg.decode, "decode"),
            "image_size": cfg.model.image_size, "max_length": cfg.vocab.max_length, "preresize": cfg.data.preresize}


@functools.cache
def standin_records(work: Path) -> list:
    """All the stand-in's records, its 117 MB split file read once per process."""
    from captioner.data.formats import read_karpathy

    return read_karpathy(work / "standin" / "dataset_coco.json", work / "standin" / "images")


def records(work: Path, split: str, count: int | None = None, preresize: int | None = None):
    """The stand-in's first ``count`` records of ``split`` (pre-resized as the recipe does)."""
    from captioner.data.datasets import preresize_images
    from captioner.data.formats import split_records

    chosen = split_records(standin_records(work), split)
    chosen = chosen[:count] if count else chosen
    return preresize_images(chosen, work / f"resized_{preresize}", preresize) if preresize else chosen


def vocabulary(work: Path):
    from captioner.vocab import Vocabulary
    return Vocabulary(json.loads((work / "vocab.json").read_text()))


def new_captioner(settings: dict, work: Path):
    from captioner.api import Captioner
    from captioner.models.encoder import encoder_preprocess
    from captioner.models.model import CaptionModel

    torch.manual_seed(0)  # every part builds the same random weights: the feature cache is shared
    vocab = vocabulary(work)
    model = CaptionModel(len(vocab), settings["encoder"], settings["decoder"])
    preprocess = encoder_preprocess(settings["encoder"]["name"], None, settings["image_size"])
    return Captioner(model, vocab, preprocess, captioner_device(settings["trainer"].device), settings["max_length"],
                     settings["trainer"].channels_last)


def part_data(work: Path, **_) -> dict:
    from captioner.data.datasets import karpathy, preresize_images
    from captioner.data.formats import split_records
    from captioner.rewards import CiderD
    from captioner.scst import caption_words
    from captioner.vocab import Vocabulary

    started = time.perf_counter()
    everything = karpathy(str(work / "standin" / "dataset_coco.json"), str(work / "standin" / "images"))
    read = time.perf_counter() - started
    train = split_records(everything, "train")
    started = time.perf_counter()
    vocab = Vocabulary.build((c for r in train for c in r.captions), min_count=5)
    build = time.perf_counter() - started
    (work / "vocab.json").write_text(json.dumps(vocab.words))
    started = time.perf_counter()
    CiderD([[caption_words(vocab.encode(c, 16), vocab) for c in r.captions] for r in train])
    cider = time.perf_counter() - started
    sample = train[:200]
    started = time.perf_counter()
    preresize_images(sample, work / "resized_256", 256)
    preresize = len(sample) / (time.perf_counter() - started)
    return {"images": len(everything), "train_images": len(train), "captions": sum(len(r.captions) for r in train),
            "words": len(vocab), "read_split_s": read, "vocab_s": build, "cider_df_s": cider,
            "preresize_images_per_s": preresize, "sample_kb": sum(r.path.stat().st_size for r in sample) / 200 / 1e3}


def part_build(work: Path, recipe: str, device: str, **_) -> dict:
    from torch.utils.flop_counter import FlopCounterMode


    settings = compose_recipe(recipe, work, device)
    captioner = new_captioner(settings, work)
    model = captioner.model
    count = lambda module: sum(p.numel() for p in module.parameters()) if module is not None else 0  # noqa: E731
    decoder = model.decoder
    unused = 0 if decoder.word_prior else count(decoder.word_head)  # trained by the word loss; captions never use it
    path = work / f"{recipe}.pt"
    captioner.save(path)
    size = captioner.preprocess.image_size
    pixels = torch.rand(1, 3, size, size, device=captioner.device)
    tokens = torch.randint(4, len(captioner.vocab), (5, settings["max_length"] + 1), device=captioner.device)
    flops = {}
    with torch.no_grad():
        for name, run in [("encoder", lambda: model.encoder(pixels)),
                          ("teacher_forcing_5", lambda: model(pixels, tokens, torch.zeros(5, dtype=torch.long,
                                                                                          device=pixels.device))),
                          ("beam", lambda: captioner.caption_candidates(pixels, **dataclasses.asdict(
                              dataclasses.replace(settings["decode"], amp=False, max_length=settings["max_length"]))))]:
            with FlopCounterMode(display=False) as counter:
                run()
            flops[name] = counter.get_total_flops()
    return {"params_encoder": count(model.encoder), "params_decoder": count(decoder),
            "params_captioning": count(model) - unused, "params_total": count(model),
            "checkpoint_mb": path.stat().st_size / 1e6, "flops": flops, "beam": settings["decode"].beam_size}


def timed_trainer(*args, **kwargs):
    """The real Trainer, keeping each optimizer step's own time (compute, without data loading)."""
    from captioner.training import Trainer

    class TimedTrainer(Trainer):
        def _step(self, *batch):
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            figures = super()._step(*batch)  # holds the loss as a float (.item()): the step has finished
            self.step_seconds.append(time.perf_counter() - started)
            return figures

    trainer = TimedTrainer(*args, **kwargs)
    trainer.step_seconds = []
    return trainer


def train_part(work: Path, recipe: str, device: str, steps: int, phase: str) -> dict:
    """``steps`` optimizer steps of one phase through the real Trainer, on the first images of the train split."""
    from captioner.api import Captioner

    settings = compose_recipe(recipe, work, device)
    config = settings["trainer"]
    batch = config.batch_size
    config = dataclasses.replace(config, max_steps=steps, val_max_images=0, monitor="val_loss", monitor_mode="min",
                                 checkpoint_every_steps=10 ** 9)
    if phase == "finetune":  # the epochs after finetune_after_epochs: the encoder trains, images are read
        settings["encoder"]["freeze"] = False
        config = dataclasses.replace(config, feature_cache=False, finetune_after_epochs=None)
    if phase == "scst":
        captioner = Captioner.load(config.init_from, captioner_device(config.device))
    else:
        captioner = new_captioner(settings, work)
    train = records(work, "train", steps * batch, settings["preresize"])
    val = train[:batch]  # the loss pass only: its size is measured apart
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    run_dir = work / "runs" / f"{recipe}_{phase}"
    trainer = timed_trainer(captioner, train, val, config, run_dir)
    figures = trainer.fit()
    timed = trainer.step_seconds
    loop_seconds = len(timed) * batch / figures["train_images_per_second"]  # the loop: data loading included
    return {"step_s": statistics.median(timed[1:] or timed), "first_step_s": timed[0], "batch": batch,
            "loop_step_s": (loop_seconds - timed[0]) / max(1, len(timed) - 1), "steps": len(timed),
            "last_mb": (run_dir / "last.pt").stat().st_size / 1e6,
            "gpu_peak_gb": torch.cuda.max_memory_allocated() / 2 ** 30 if torch.cuda.is_available() else None}


def part_extract(work: Path, recipe: str, device: str, steps: int, **_) -> dict:
    from captioner.feature_cache import cached_features
    from captioner.training_data import feature_extraction

    settings = compose_recipe(recipe, work, device)
    captioner = new_captioner(settings, work)
    config = settings["trainer"]
    images = records(work, "train", steps * config.batch_size, settings["preresize"])
    encoder = captioner.model.encoder
    started = time.perf_counter()
    rows = cached_features(encoder, captioner.preprocess, [r.path for r in images], config.feature_cache_dir,
                           feature_extraction(config, captioner.device))
    seconds = time.perf_counter() - started
    return {"images_per_s": len(images) / seconds, "bytes_per_image": rows.array()[0].nbytes,
            "images": len(images)}


def part_validate(work: Path, recipe: str, device: str, steps: int, **_) -> dict:
    """One validation of 5,000 images as the frozen epochs run it: their cached features (the extracted
    rows, reused in turn) -> the teacher-forced loss over their 25,000 captions, greedy captions, metrics."""
    from captioner.data.dataset import CaptionDataset
    from captioner.feature_cache import cached_features
    from captioner.training import Trainer
    from captioner.training_data import feature_extraction

    settings = compose_recipe(recipe, work, device)
    captioner = new_captioner(settings, work)
    config = dataclasses.replace(settings["trainer"], val_max_images=VAL_IMAGES)
    extracted = records(work, "train", steps * config.batch_size, settings["preresize"])
    rows = cached_features(captioner.model.encoder, captioner.preprocess, [r.path for r in extracted],
                           config.feature_cache_dir, feature_extraction(config, captioner.device))
    val = records(work, "val", VAL_IMAGES)
    trainer = Trainer(captioner, extracted, val, config, work / "runs" / f"{recipe}_validate")
    val_features = CaptionDataset(val, captioner.vocab, captioner.transform, captioner.max_length).with_features(
        CycledRows(rows, len(val)))
    trainer.data.features = (val_features, val_features)
    started = time.perf_counter()
    figures = trainer.validate()
    return {"seconds": time.perf_counter() - started, "images": len(val), "val_CIDEr": figures.get("val_CIDEr")}


class CycledRows:
    """``count`` feature rows read from the memory-mapped cache of fewer images, each in turn."""

    def __init__(self, rows, count: int):
        self.rows, self.count = rows, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.rows[index % len(self.rows)]


def part_caption(work: Path, recipe: str, device: str, **_) -> dict:
    """Captioning 640x480 JPEG files with the recipe's decoding, fp32 and with ``decode.amp`` (the same on a
    CPU without bf16 instructions), and for a model that attends, with where it looked for each word."""
    from captioner.api import Captioner

    settings = compose_recipe(recipe, work, device)
    captioner = Captioner.load(work / f"{recipe}.pt", captioner_device(device))
    paths = [r.path for r in records(work, "test", 96 if captioner.device.type == "cpu" else 2000)]
    decode = dataclasses.asdict(settings["decode"])
    runs = {"amp=False": {"amp": False}, "amp=True": {"amp": True}}
    if captioner.model.decoder.attention is not None:
        runs["attention"] = {"amp": True, "attention": True}
    rates = {}
    for name, options in list(runs.items()) * 2:
        started = time.perf_counter()
        list(captioner.caption_results(paths, batch_size=32, num_workers=settings["trainer"].num_workers,
                                       **(decode | options)))
        rates.setdefault(name, []).append(len(paths) / (time.perf_counter() - started))
    return {name: max(values) for name, values in rates.items()} | {"images": len(paths)}


def captioner_device(device: str) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


PARTS = {"data": part_data, "build": part_build, "extract": part_extract, "validate": part_validate,
         "caption": part_caption,
         "frozen": lambda **kw: train_part(**kw, phase="frozen"),
         "finetune": lambda **kw: train_part(**kw, phase="finetune"),
         "scst": lambda **kw: train_part(**kw, phase="scst")}


def run_child(part: str, work: Path, recipe: str, device: str, steps: int) -> dict:
    """One part in its own process: its figures and its peak memory (the process and its loader workers)."""
    command = [sys.executable, __file__, "--work", str(work), "--device", device, "--steps", str(steps),
               "--part", part, "--recipe", recipe]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        sys.exit(f"{part} of {recipe} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


# --- the report ----------------------------------------------------------------------------------------------

def report(recipe: str, figures: dict) -> None:
    build, extract, validate, caption = (figures[k] for k in ("build", "extract", "validate", "caption"))
    steps_per_epoch = math.ceil(TRAIN_IMAGES / build_batch(figures))
    extraction_s = (TRAIN_IMAGES + VAL_IMAGES) / extract["images_per_s"]
    val_from_images = VAL_IMAGES / extract["images_per_s"] + validate["seconds"]  # the encoder runs again
    rows = [("parameters: encoder / decoder / total (paper's model)",
             f"{build['params_encoder'] / 1e6:.1f}M / {build['params_decoder'] / 1e6:.1f}M / "
             f"{build['params_total'] / 1e6:.1f}M ({PAPERS[recipe] / 1e6:.0f}M)"),
            ("parameters captioning needs", f"{build['params_captioning'] / 1e6:.1f}M"),
            ("checkpoint", f"{build['checkpoint_mb']:.0f} MB"),
            ("forward GFLOPs per image: encoder / encoder + teacher forcing of 5 captions / beam "
             f"{build['beam']} decoding alone", "{:.2f} / {:.2f} / {:.2f}".format(
                 build["flops"]["encoder"] / 1e9, build["flops"]["teacher_forcing_5"] / 1e9,
                 (build["flops"]["beam"] - build["flops"]["encoder"]) / 1e9)),
            ("feature cache: extraction / size for train + val",
             f"{extract['images_per_s']:.1f} images/s, {extraction_s / 3600:.1f} h / "
             f"{extract['bytes_per_image'] * (TRAIN_IMAGES + VAL_IMAGES) / 1e9:.1f} GB"),
            ("validation of 5,000 images from the cache (loss + greedy + metrics) / from images; its peak RSS",
             f"{validate['seconds']:.0f} s / {val_from_images / 60:.1f} min; {validate['peak_rss_gb']:.1f} GB"),
            (f"captioning JPEG files, beam {build['beam']}: fp32 / decode.amp"
             + (" / with attention maps" if "attention" in caption else ""),
             f"{caption['amp=False']:.1f} / {caption['amp=True']:.1f}"
             + (f" / {caption['attention']:.1f}" if "attention" in caption else "") + " images/s")]
    total = 0.0
    for phase in ("frozen", "finetune", "scst"):
        if phase not in figures:
            continue
        part = figures[phase]
        validation = val_from_images if phase == "finetune" else validate["seconds"]
        epoch = steps_per_epoch * part["loop_step_s"] + validation
        epochs = figures["epochs"][phase]
        total += epoch * epochs
        rows.append((f"{phase}: s/step, compute / with data loading; images/s; peak RSS",
                     f"{part['step_s']:.2f} / {part['loop_step_s']:.2f}; {part['batch'] / part['loop_step_s']:.1f}; "
                     f"{part['peak_rss_gb']:.1f} GB"
                     + (f" / GPU {part['gpu_peak_gb']:.1f} GB" if part.get("gpu_peak_gb") else "")))
        rows.append((f"{phase}: last.pt (resumable: the weights and the optimizer state)",
                     f"{part['last_mb']:.0f} MB"))
        rows.append((f"{phase}: one epoch ({steps_per_epoch} steps + validation), x {epochs} epochs",
                     f"{epoch / 3600:.1f} h, {epoch * epochs / 3600:.0f} h"))
    if "frozen" in figures or "scst" in figures:
        total += extraction_s
    total += TEST_IMAGES / caption["amp=True"]
    rows.append(("the whole recipe (extraction, epochs, test captioning)",
                 f"{total / 3600:.0f} h = {total / 86400:.1f} days"))
    print(f"\n### {recipe}\n\n| figure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


def build_batch(figures: dict) -> int:
    return next(figures[p]["batch"] for p in ("frozen", "finetune", "scst") if p in figures)


def recipe_epochs(recipe: str, work: Path, device: str) -> dict:
    trainer = compose_recipe(recipe, work, device)["trainer"]
    if trainer.objective == "scst":
        return {"scst": trainer.max_epochs}
    frozen = trainer.finetune_after_epochs if trainer.finetune_after_epochs is not None else trainer.max_epochs
    return {"frozen": frozen, "finetune": trainer.max_epochs - frozen}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/coco_scale"))
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per phase (the first is not timed)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--distinct", type=int, default=2000, help="distinct JPEGs of the stand-in")
    parser.add_argument("--recipes", nargs="*", default=list(RECIPES))
    parser.add_argument("--part", choices=list(PARTS), help=argparse.SUPPRESS)
    parser.add_argument("--recipe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:  # a child: one part's figures as one line
        figures = PARTS[args.part](work=args.work, recipe=args.recipe, device=args.device, steps=args.steps)
        own, workers = (resource.getrusage(who).ru_maxrss / 2 ** 20 for who in
                        (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
        print("RESULT " + json.dumps(figures | {"peak_rss_gb": own, "workers_peak_rss_gb": workers}), flush=True)
        return
    from captioner.devices import cpu_description

    print(f"{cpu_description()}; torch {torch.__version__}; CUDA: "
          f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}", flush=True)
    started = time.perf_counter()
    coco_standin.write(args.work / "standin", args.distinct)
    print(f"stand-in ready in {time.perf_counter() - started:.0f} s", flush=True)
    data = run_child("data", args.work, "", args.device, args.steps)
    print(f"\n{data['images']} images, {data['captions']} training captions; split file read and images checked "
          f"{data['read_split_s']:.1f} s; vocabulary {data['words']} words at min_count 5 in {data['vocab_s']:.1f} s; "
          f"CIDEr-D document frequencies (SCST) {data['cider_df_s']:.1f} s; pre-resizing to 256 px "
          f"{data['preresize_images_per_s']:.0f} images/s ({(data['images'] / data['preresize_images_per_s']) / 60:.0f}"
          f" min for all); peak RSS {data['peak_rss_gb']:.1f} GB", flush=True)
    measured: dict[str, dict] = {}
    for recipe in sorted(args.recipes, key=lambda name: name.endswith("scst")):  # scst starts from coco_show_tell
        base = "coco_show_tell" if recipe.endswith("scst") else recipe  # the same model, cache and validation
        figures = {"epochs": recipe_epochs(recipe, args.work, args.device)}
        for part in ["build", "extract", "validate", "caption"] + list(figures["epochs"]):
            if part in measured.get(base, {}):
                figures[part] = measured[base][part]
                continue
            figures[part] = run_child(part, args.work, base if part != "scst" else recipe, args.device, args.steps)
            print(f"  {recipe} {part}: {json.dumps(figures[part])}", flush=True)
        measured[recipe] = figures
        report(recipe, figures)


if __name__ == "__main__":
    main()
