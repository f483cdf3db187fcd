import csv
import json

import pytest
import torch
from conftest import TINY_DECODER, TINY_ENCODER, interrupted_at_step, tiny_trainer
from PIL import Image

from captioner import Captioner, CaptionerError
from captioner.checkpoint import load_checkpoint
from captioner.recipe import train
from captioner.synthetic.scoring import AttributeAccuracy
from captioner.training import Trainer, warmup_cosine


def test_run_writes_checkpoints_curve_and_metrics(tiny_records, tmp_path):
    metrics = train(tiny_records, tmp_path, TINY_ENCODER, TINY_DECODER, tiny_trainer(max_epochs=2), image_size=32,
                    scorers=[AttributeAccuracy()])
    assert {"last.pt", "model.pt", "metrics.json", "training_curve.csv", "training_curve.png"} <= {
        p.name for p in tmp_path.iterdir()}
    with Image.open(tmp_path / "training_curve.png") as picture:
        assert picture.format == "PNG" and picture.size == (900, 340)
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == metrics and 0.0 <= written["attribute_accuracy"] <= 1.0 and "attribute_accuracy_novel" in written
    rows = list(csv.DictReader((tmp_path / "training_curve.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and all(float(r["val_loss"]) > 0 for r in rows)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 12  # 48 images / batch 8 * 2 epochs
    assert Captioner.load(tmp_path / "model.pt").caption([tiny_records[0].path])[0] != ""


def test_max_steps_stops_early_and_its_progress_bar_ends_full(tiny_records, tmp_path, capsys):
    train(tiny_records, tmp_path, TINY_ENCODER, TINY_DECODER, tiny_trainer(max_epochs=5, max_steps=2), image_size=32,
          test_split=None)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2
    bar = capsys.readouterr().err
    assert "2/2 [" in bar and "/6 [" not in bar  # 6 steps an epoch, 2 of them run


def _train(records, out_dir, **overrides):
    torch.manual_seed(0)
    decoder = TINY_DECODER | {"dropout": 0.3, "num_layers": 2}  # dropout: the RNG state matters
    trainer = tiny_trainer(**{"max_epochs": 2, "checkpoint_every_steps": 4} | overrides)
    train(records, out_dir, TINY_ENCODER, decoder, trainer, image_size=32, test_split=None)
    return load_checkpoint(out_dir / "last.pt")


@pytest.mark.parametrize("settings", [{"captions_per_image": "all"}, {"captions_per_image": "one"},
                                      {"ema_decay": 0.8}])
def test_resume_after_interrupt_ends_with_identical_weights(tiny_records, tmp_path, settings):
    uninterrupted = _train(tiny_records, tmp_path / "a", **settings)

    with interrupted_at_step(), pytest.raises(Exception, match="interrupted"):
        _train(tiny_records, tmp_path / "b", **settings)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 5  # the step under way when Ctrl-C came ran on
    resumed = _train(tiny_records, tmp_path / "b", resume=True, **settings)

    assert resumed["step"] == uninterrupted["step"] == 12
    assert ("averaged" in resumed) == ("ema_decay" in settings)
    for part in ("state_dict", "averaged") if "ema_decay" in settings else ("state_dict",):
        for key, value in uninterrupted[part].items():
            assert torch.equal(value, resumed[part][key]), (part, key)


def test_learning_rate_warms_up_then_decays():
    factors = [warmup_cosine(s, warmup_steps=4, total_steps=20) for s in range(20)]
    assert factors[0] == 0.25 and factors[3] == 1.0
    assert all(a >= b for a, b in zip(factors[3:], factors[4:])) and factors[-1] >= 0.05


def test_optimizer_covers_every_parameter_once(tiny_records, tmp_path):
    from captioner.data.transforms import Preprocess
    from captioner.models.model import CaptionModel
    from captioner.vocab import Vocabulary

    vocab = Vocabulary.build(c for r in tiny_records for c in r.captions)
    captioner = Captioner(CaptionModel(len(vocab), TINY_ENCODER, TINY_DECODER), vocab, Preprocess(32))
    trainer = Trainer(captioner, tiny_records[:8], tiny_records[8:10], tiny_trainer(encoder_lr=1e-4), tmp_path)
    in_groups = [id(p) for group in trainer.optimizer.param_groups for p in group["params"]]
    assert sorted(in_groups) == sorted(id(p) for p in captioner.model.parameters())
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [1e-4 * 0.5, 3e-3 * 0.5]  # warmup step 0 of 2


def test_cached_images_train_the_same_weights(tiny_records, tmp_path):
    plain, cached = _train(tiny_records, tmp_path / "a"), _train(tiny_records, tmp_path / "b", cache_images=True)
    for key, value in plain["state_dict"].items():
        assert torch.equal(value, cached["state_dict"][key]), key


def test_cached_images_with_worker_processes_are_refused(tiny_records, tmp_path):
    with pytest.raises(Exception, match="cache_images needs trainer.num_workers=0"):
        _train(tiny_records, tmp_path, cache_images=True, num_workers=1)


def test_moving_average_is_what_validation_scores_and_model_pt_holds(tiny_records, tmp_path):
    last = _train(tiny_records, tmp_path, max_epochs=1, ema_decay=0.5)  # one epoch: model.pt is its end
    best = load_checkpoint(tmp_path / "model.pt")["state_dict"]
    averaged = {key.removeprefix("module."): value for key, value in last["averaged"].items() if key != "n_averaged"}
    assert best.keys() == averaged.keys() and all(torch.equal(best[k], averaged[k]) for k in best)
    assert not torch.equal(best["decoder.out.weight"], last["state_dict"]["decoder.out.weight"])


def test_resuming_without_the_average_is_refused(tiny_records, tmp_path):
    _train(tiny_records, tmp_path, max_epochs=1)
    with pytest.raises(Exception, match="without trainer.ema_decay"):
        _train(tiny_records, tmp_path, ema_decay=0.9, resume=True)


WORDS = [["red", "violet", "blue"], ["circle", "disc"]]


def test_class_pointer_and_logit_adjustment_train_and_are_saved(tiny_records, tmp_path):
    weights = {}
    for adjusted in (False, True):
        head = {"name": "word_classes", "words": WORDS, "pointer": True, "logit_adjustment": adjusted}
        # cut after layer2: at 32 px its map is 4x4, so the grid's cells differ and the pointer has somewhere to point
        train(tiny_records, tmp_path / str(adjusted), TINY_ENCODER | {"stage": "layer2"},
              TINY_DECODER | {"attention_dim": 8, "head": head}, tiny_trainer(max_steps=2), image_size=32,
              test_split=None)
        weights[adjusted] = load_checkpoint(tmp_path / str(adjusted) / "last.pt")["state_dict"]
    assert not torch.equal(weights[False]["decoder.out.weight"], weights[True]["decoder.out.weight"])  # it trained
    assert not torch.equal(weights[True]["decoder.head.pointer_scale"], torch.ones(2))  # the pointer's scale learned
    assert not any("prior" in key for key in weights[True])  # a training-only prior stays out of checkpoints
    captioner = Captioner.load(tmp_path / "True" / "model.pt")
    assert captioner.model.decoder.head.pointer_scale is not None and captioner.model.decoder.head.prior is None
    assert captioner.caption([tiny_records[0].path])[0]


def test_word_classes_are_trained_saved_and_used_by_name(tiny_records, tmp_path):
    head = {"name": "word_classes", "words": WORDS, "decoding_lm_weight": 0.1}
    train(tiny_records, tmp_path, TINY_ENCODER, TINY_DECODER | {"word_prior": True, "head": head},
          tiny_trainer(max_steps=2), image_size=32, test_split=None)
    captioner = Captioner.load(tmp_path / "model.pt")
    assert [[captioner.vocab.words[i] for i in group] for group in captioner.model.decoder.head.groups] == WORDS
    assert captioner.model.decoder.head.decoding_lm_weight == 0.1
    image = [tiny_records[0].path]
    scores = {weight: Captioner.load(tmp_path / "model.pt", head={"decoding_lm_weight": weight}).caption_candidates(
        image)[0][0].log_prob for weight in (None, 0.1, 5.0)}
    assert scores[None] == scores[0.1] != scores[5.0]  # head.decoding_lm_weight overrides the checkpoint's


class MadeUpFigures:
    """A scorer whose figure for each validation is given in advance."""

    def __init__(self, values):
        self.values = iter(values)

    def __call__(self, captions, records):
        return {"made_up": next(self.values)}


@pytest.mark.parametrize("mode, best_step", [("max", 12), ("min", 6)])
def test_model_pt_is_the_epoch_best_by_the_monitored_figure(tiny_records, tmp_path, mode, best_step):
    train(tiny_records, tmp_path, TINY_ENCODER, TINY_DECODER, image_size=32, test_split=None,
          trainer=tiny_trainer(max_epochs=3, monitor="val_made_up", monitor_mode=mode),
          scorers=[MadeUpFigures([0.2, 0.5, 0.3])])  # 6 steps an epoch: epoch 2 is best by max, epoch 1 by min
    assert load_checkpoint(tmp_path / "model.pt")["step"] == best_step


def test_validation_scores_a_seeded_subset_with_the_coco_metrics_and_selects_by_cider(tiny_records, tmp_path,
                                                                                      monkeypatch):
    captioned = []
    real = Captioner._decode
    monkeypatch.setattr(Captioner, "_decode", lambda self, pixels, options: captioned.append(len(pixels))
                        or real(self, pixels, options))
    metrics = train(tiny_records, tmp_path, TINY_ENCODER, TINY_DECODER, tiny_trainer(max_epochs=2, val_max_images=5),
                    image_size=32, test_split=None)
    assert captioned == [5, 5]  # 5 of the 16 validation images, each epoch
    rows = list(csv.DictReader((tmp_path / "training_curve.csv").open()))
    assert {"val_loss", "val_Bleu_4", "val_ROUGE_L", "val_CIDEr"} <= set(rows[0]) and "val_METEOR" not in rows[0]
    assert "val_CIDEr" in metrics
    best = max(range(2), key=lambda i: float(rows[i]["val_CIDEr"]))  # the first of equals stays, as in training
    assert load_checkpoint(tmp_path / "model.pt")["step"] == int(rows[best]["step"])


def test_the_validation_subset_is_the_same_every_epoch_and_seeded(tiny_records):
    from captioner.validation import seeded_subset

    size = len([r for r in tiny_records if r.split == "val"])
    chosen = seeded_subset(size, 5, 0)
    assert chosen == seeded_subset(size, 5, 0) != seeded_subset(size, 5, 1)
    assert chosen == sorted(set(chosen)) and len(chosen) == 5 and set(chosen) <= set(range(size))
    assert seeded_subset(size, 100, 0) == list(range(size))


def test_validation_decodes_nothing_with_val_max_images_0_and_then_a_caption_monitor_is_refused(tiny_records,
                                                                                               tmp_path, monkeypatch):
    decoded = []
    real = Captioner._decode
    monkeypatch.setattr(Captioner, "_decode", lambda self, *a: decoded.append(1) or real(self, *a))
    train(tiny_records, tmp_path / "loss", TINY_ENCODER, TINY_DECODER,
          tiny_trainer(val_max_images=0, monitor="val_loss", monitor_mode="min"), image_size=32, test_split=None)
    assert decoded == []
    rows = list(csv.DictReader((tmp_path / "loss" / "training_curve.csv").open()))
    assert [k for k in rows[0] if k.startswith("val_")] == ["val_loss"]
    with pytest.raises(CaptionerError, match="trainer.monitor=val_CIDEr: with trainer.val_max_images=0 validation "
                                             "reports only val_loss"):
        train(tiny_records, tmp_path / "x", TINY_ENCODER, TINY_DECODER, tiny_trainer(val_max_images=0),
              image_size=32, test_split=None)
    with pytest.raises(CaptionerError, match="trainer.monitor=val_made_up: validation reports val_loss, val_Bleu_1"):
        train(tiny_records, tmp_path / "y", TINY_ENCODER, TINY_DECODER, tiny_trainer(monitor="val_made_up"),
              image_size=32, test_split=None)


def test_tensorboard_event_files_hold_every_figure_of_the_curve(tiny_records, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(tiny_records, tmp_path, TINY_ENCODER, TINY_DECODER, tiny_trainer(max_epochs=2, tensorboard=True),
          image_size=32, test_split=None, scorers=[AttributeAccuracy()])
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    rows = list(csv.DictReader((tmp_path / "training_curve.csv").open()))
    curve = {name.replace("_", "/", 1) for name in rows[0] if name != "step"}
    assert curve | {"lr/encoder", "lr/decoder", "train/images_per_second", "train/step_loss"} <= tags
    assert "val/attribute_accuracy" in tags and "val/CIDEr" in tags
    cider = events.Scalars("val/CIDEr")
    assert [e.step for e in cider] == [int(r["step"]) for r in rows]
    assert [round(e.value, 4) for e in cider] == [float(r["val_CIDEr"]) for r in rows]
    assert [e.step for e in events.Scalars("lr/decoder")] == [10]  # every 10 steps: 12 steps in all
