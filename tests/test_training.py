import csv
import json

import pytest
import torch
from conftest import TINY_DECODER, TINY_ENCODER, tiny_trainer

from captioner import Captioner
from captioner.cli.train import run
from captioner.models.captioner import load_checkpoint
from captioner.training import Trainer, warmup_cosine


def test_run_writes_checkpoints_curve_and_metrics(tiny_records, tmp_path):
    metrics = run(tiny_records, tmp_path, TINY_ENCODER, TINY_DECODER, tiny_trainer(max_epochs=2), image_size=32)
    assert {"last.pt", "model.pt", "metrics.json", "training_curve.csv"} <= {p.name for p in tmp_path.iterdir()}
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == metrics and 0.0 <= written["attribute_accuracy"] <= 1.0 and "attribute_accuracy_novel" in written
    rows = list(csv.DictReader((tmp_path / "training_curve.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and all(float(r["val_loss"]) > 0 for r in rows)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 12  # 48 images / batch 8 * 2 epochs
    assert Captioner.load(tmp_path / "model.pt").caption([tiny_records[0].path])[0] != ""


def test_max_steps_stops_early(tiny_records, tmp_path):
    run(tiny_records, tmp_path, TINY_ENCODER, TINY_DECODER, tiny_trainer(max_epochs=5, max_steps=2), image_size=32,
        test_split=None)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2


def _train(records, out_dir, **overrides):
    torch.manual_seed(0)
    decoder = TINY_DECODER | {"dropout": 0.3, "num_layers": 2}  # dropout: the RNG state matters
    run(records, out_dir, TINY_ENCODER, decoder, tiny_trainer(max_epochs=2, checkpoint_every_steps=4, **overrides),
        image_size=32, test_split=None)
    return load_checkpoint(out_dir / "last.pt")


@pytest.mark.parametrize("captions_per_image", ["all", "one"])
def test_resume_after_interrupt_ends_with_identical_weights(tiny_records, tmp_path, monkeypatch, captions_per_image):
    uninterrupted = _train(tiny_records, tmp_path / "a", captions_per_image=captions_per_image)

    real_step, calls = Trainer._train_step, {"n": 0}

    def interrupt_at_step_5(self, *args):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # as Ctrl-C: last.pt is saved, the run stops
        return real_step(self, *args)

    monkeypatch.setattr(Trainer, "_train_step", interrupt_at_step_5)
    with pytest.raises(Exception, match="interrupted"):
        _train(tiny_records, tmp_path / "b", captions_per_image=captions_per_image)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 4
    monkeypatch.setattr(Trainer, "_train_step", real_step)
    resumed = _train(tiny_records, tmp_path / "b", captions_per_image=captions_per_image, resume=True)

    assert resumed["step"] == uninterrupted["step"] == 12
    for key, value in uninterrupted["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key


def test_learning_rate_warms_up_then_decays():
    factors = [warmup_cosine(s, warmup_steps=4, total_steps=20) for s in range(20)]
    assert factors[0] == 0.25 and factors[3] == 1.0
    assert all(a >= b for a, b in zip(factors[3:], factors[4:])) and factors[-1] >= 0.05


def test_optimizer_covers_every_parameter_once(tiny_records, tmp_path):
    from captioner.data.transforms import Preprocess
    from captioner.models.captioner import CaptionModel
    from captioner.vocab import Vocabulary

    vocab = Vocabulary.build(c for r in tiny_records for c in r.captions)
    captioner = Captioner(CaptionModel(len(vocab), TINY_ENCODER, TINY_DECODER), vocab, Preprocess(32))
    trainer = Trainer(captioner, tiny_records[:8], tiny_records[8:10], tiny_trainer(encoder_lr=1e-4), tmp_path)
    in_groups = [id(p) for group in trainer.optimizer.param_groups for p in group["params"]]
    assert sorted(in_groups) == sorted(id(p) for p in captioner.model.parameters())
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [1e-4 * 0.5, 3e-3 * 0.5]  # warmup step 0 of 2
