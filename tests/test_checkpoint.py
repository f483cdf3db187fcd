import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from captioner import Captioner, CaptionerError
from captioner.checkpoint import CHECKPOINT_VERSION, load_checkpoint
from captioner.models.model import CaptionModel


def test_round_trip_gives_identical_weights_and_captions(tiny_checkpoint, tiny_records, tmp_path):
    captioner = Captioner.load(tiny_checkpoint)
    copy_path = tmp_path / "copy.pt"
    captioner.save(copy_path, step=7)
    copy = Captioner.load(copy_path)
    for key, value in captioner.model.state_dict().items():
        assert torch.equal(value, copy.model.state_dict()[key]), key
    assert copy.vocab.words == captioner.vocab.words and copy.preprocess == captioner.preprocess
    images = [r.path for r in tiny_records[:4]]
    assert copy.caption(images) == captioner.caption(images)
    payload = load_checkpoint(copy_path)
    assert payload["version"] == CHECKPOINT_VERSION and payload["step"] == 7
    assert isinstance(payload["vocab"], list) and all(isinstance(w, str) for w in payload["vocab"])
    assert payload["model_args"]["encoder"]["name"] == "resnet18"
    assert [p.name for p in tmp_path.iterdir()] == ["copy.pt"]  # no temporary file left behind


def test_version_1_checkpoint_with_the_word_head_beside_the_decoder_still_loads(tiny_checkpoint, tiny_records,
                                                                                tmp_path):
    today = Captioner.load(tiny_checkpoint)
    args = today.model.args
    grid = CaptionModel(args["vocab_size"], args["encoder"], args["decoder"] | {"summary": "grid"})  # as version 1 read
    Captioner(grid, today.vocab, today.preprocess, max_length=today.max_length).save(tmp_path / "grid.pt")
    payload = torch.load(tmp_path / "grid.pt", weights_only=True)
    old_keys = {k: k.removeprefix("decoder.") if k.startswith("decoder.word_head.") else k
                for k in payload["state_dict"]}
    old_args = payload["model_args"] | {"decoder": {k: v for k, v in args["decoder"].items() if k != "summary"}}
    torch.save(dict(payload, version=1, model_args=old_args,
                    state_dict={old_keys[k]: v for k, v in payload["state_dict"].items()}), tmp_path / "v1.pt")
    assert "word_head.weight" in torch.load(tmp_path / "v1.pt", weights_only=True)["state_dict"]
    images = [r.path for r in tiny_records[:4]]
    assert Captioner.load(tmp_path / "v1.pt").caption(images) == Captioner.load(tmp_path / "grid.pt").caption(images)


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_with_pickled_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    _RunsCode.marker = marker
    path = tmp_path / "evil.pt"
    torch.save({"format": "captioner-checkpoint", "version": 1, "payload": _RunsCode()}, path)
    with pytest.raises(CaptionerError, match="refused"):
        Captioner.load(path)
    assert not marker.exists()


def test_wrong_files_get_clear_errors(tmp_path):
    with pytest.raises(CaptionerError, match="checkpoint not found"):
        Captioner.load(tmp_path / "missing.pt")
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CaptionerError, match="not a readable checkpoint"):
        Captioner.load(text)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CaptionerError, match="not a captioner checkpoint"):
        Captioner.load(other)
    future = tmp_path / "future.pt"
    torch.save({"format": "captioner-checkpoint", "version": 99}, future)
    with pytest.raises(CaptionerError, match="version 99"):
        Captioner.load(future)


def test_plain_pickle_file_is_refused(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"a": {1, 2}}))
    with pytest.raises(CaptionerError, match=str(path)):
        Captioner.load(path)


VERSION_2 = Path(__file__).parent / "fixtures" / "v2"


def candidates_as_recorded(path: Path, images: list[Path], settings: dict) -> list:
    """The candidates today's code gives with decoding settings as a fixture recorded them: the word-class
    head's weight and the re-ranker were decoding options then (``class_lm_weight``, ``rerank``); they are
    the head's and the Captioner's own settings now."""
    settings = dict(settings)
    head = {"decoding_lm_weight": settings.pop("class_lm_weight", None)}
    captioner = Captioner.load(path, rerank={"name": settings.pop("rerank", "none")}, head=head)
    return captioner.caption_candidates(images, **settings)


@pytest.mark.parametrize("variant, head", [("word_classes", "word_classes"), ("plain_lstm", "plain")])
def test_a_version_2_checkpoint_loads_and_captions_as_the_code_that_wrote_it(variant, head):
    expected = json.loads((VERSION_2 / "v2_expected.json").read_text())
    images = [VERSION_2 / "images" / name for name in expected["images"]]
    payload = load_checkpoint(VERSION_2 / f"v2_{variant}.pt")
    assert payload["version"] == CHECKPOINT_VERSION and payload["model_args"]["decoder"]["head"]["name"] == head
    runs = expected["expected"][variant]
    assert len(runs["settings"]) >= 3
    for name, settings in runs["settings"].items():
        got = candidates_as_recorded(VERSION_2 / f"v2_{variant}.pt", images, settings)
        assert [[c for c, _ in image] for image in got] == [[c for c, _ in image] for image in runs[name]], name
        assert torch.allclose(torch.tensor([[lp for _, lp in image] for image in got]),
                              torch.tensor([[lp for _, lp in image] for image in runs[name]]), atol=1e-5), name


def test_the_word_class_settings_of_version_2_become_the_head(tmp_path):
    payload = load_checkpoint(VERSION_2 / "v2_word_classes.pt")
    head = payload["model_args"]["decoder"]["head"]
    assert head | {"groups": None} == {"name": "word_classes", "groups": None, "lm_weight": 0.3,
                                       "decoding_lm_weight": 0.05, "pointer": True}
    assert not any(key.startswith("class_") or key == "word_classes" for key in payload["model_args"]["decoder"])
    weights = payload["state_dict"]
    assert "decoder.head.pointer_scale" in weights and "decoder.pointer_scale" not in weights
    Captioner.load(VERSION_2 / "v2_word_classes.pt").save(tmp_path / "v3.pt")  # saved again: today's version
    assert torch.load(tmp_path / "v3.pt", weights_only=True)["version"] == CHECKPOINT_VERSION


VERSION_3 = Path(__file__).parent / "fixtures" / "v3"


def test_a_version_3_checkpoint_reads_its_whole_grid_and_captions_as_the_code_that_wrote_it(tmp_path):
    expected = json.loads((VERSION_3 / "v3_expected.json").read_text())
    images = [VERSION_3 / "images" / name for name in expected["images"]]
    path = VERSION_3 / "v3_bidirectional_word_classes.pt"
    payload = load_checkpoint(path)
    assert payload["version"] == CHECKPOINT_VERSION and payload["model_args"]["decoder"]["summary"] == "grid"
    captioner = Captioner.load(path)
    assert captioner.model.decoder.reverse.summary.kind == "grid"
    for name, settings in expected["settings"].items():
        got = candidates_as_recorded(path, images, settings)
        assert [[c for c, _ in image] for image in got] == [[c for c, _ in image] for image in
                                                            expected["expected"][name]], name
        assert torch.allclose(torch.tensor([[lp for _, lp in image] for image in got]),
                              torch.tensor([[lp for _, lp in image] for image in expected["expected"][name]]),
                              atol=1e-5), name
    captioner.save(tmp_path / "today.pt")
    assert Captioner.load(tmp_path / "today.pt").caption_candidates(images) == captioner.caption_candidates(images)


@pytest.mark.parametrize("damage, message", [
    (lambda p: {k: v for k, v in p.items() if k != "vocab"}, "no 'vocab' in it"),
    (lambda p: p | {"state_dict": {k: v for k, v in p["state_dict"].items() if k != "decoder.out.bias"}},
     "Missing key(s) in state_dict: \"decoder.out.bias\""),
    (lambda p: p | {"state_dict": p["state_dict"] | {"decoder.out.bias": torch.zeros(3)}},
     "size mismatch for decoder.out.bias"),
    (lambda p: p | {"version": 2, "model_args": {"vocab_size": 5}}, "no 'decoder' in it"),
])
def test_a_checkpoint_with_the_right_header_and_broken_content_is_one_line_naming_it(tiny_checkpoint, tmp_path,
                                                                                     damage, message):
    path = tmp_path / "damaged.pt"
    torch.save(damage(torch.load(tiny_checkpoint, weights_only=True)), path)
    with pytest.raises(CaptionerError) as raised:
        Captioner.load(path)
    text = str(raised.value)
    assert text.startswith(f"{path}: a damaged checkpoint (") and message in text and "\n" not in text
