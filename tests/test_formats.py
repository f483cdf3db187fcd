"""Real dataset formats, each built tiny in its exact layout: read, refused when incomplete, trained on
through the CLI, and the trained model captions with the data moved away."""

from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

import pytest
from conftest import cli

from captioner.data.datasets import caption_csv, coco, flickr8k, karpathy
from captioner.errors import CaptionerError
from captioner.synthetic.scenes import describe_scene, render_scene, sample_scene


def scene_image(path: Path, seed: int) -> list[str]:
    """Write a synthetic scene as an image file; return 5 captions of it."""
    rng = random.Random(seed)
    scene = sample_scene(rng)
    path.parent.mkdir(parents=True, exist_ok=True)
    render_scene(scene, 48, rng).save(path)
    return describe_scene(scene, rng)


def make_coco(root: Path) -> Path:
    for part, count in (("train2014", 10), ("val2014", 8)):
        images, annotations = [], []
        for i in range(count):
            image_id = (1 if part == "train2014" else 5000) + i
            name = f"COCO_{part}_{image_id:012d}.jpg"
            for caption in scene_image(root / part / name, image_id):
                annotations.append({"id": len(annotations), "image_id": image_id, "caption": caption})
            images.append({"id": image_id, "file_name": name, "width": 48, "height": 48})
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        annotation_file = root / "annotations" / f"captions_{part}.json"
        annotation_file.write_text(json.dumps({"images": images, "annotations": annotations}))
    return root


def make_flickr8k(root: Path, image_folder: str = "Flicker8k_Dataset") -> Path:
    lines, names = [], []
    for i in range(14):
        name = f"{1000268201 + i}_693b08cb0e.jpg"
        names.append(name)
        lines += [f"{name}#{n}\t{caption}" for n, caption in enumerate(scene_image(root / image_folder / name, i))]
    (root / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    for list_name, chosen in (("trainImages", names[:10]), ("devImages", names[10:12]), ("testImages", names[12:])):
        (root / f"Flickr_8k.{list_name}.txt").write_text("\n".join(chosen) + "\n")
    return root


def make_karpathy(root: Path) -> Path:
    entries = []
    for i, split in enumerate(["train"] * 8 + ["restval"] * 2 + ["val"] * 2 + ["test"] * 2):
        captions = scene_image(root / "images" / "val2014" / f"img_{i}.jpg", i)
        entries.append({"filepath": "val2014", "filename": f"img_{i}.jpg", "imgid": i, "cocoid": 100 + i,
                        "split": split, "sentences": [{"raw": c, "tokens": c.split()} for c in captions]})
    (root / "dataset_coco.json").write_text(json.dumps({"images": entries, "dataset": "coco"}))
    return root


def make_csv(root: Path, with_split: bool) -> Path:
    with (root / "captions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "caption", "split"] if with_split else ["image", "caption"])
        for i in range(16):
            split = "train" if i < 10 else "val" if i < 13 else "test"
            for caption in scene_image(root / "pictures" / f"p{i}.png", i):
                writer.writerow([f"p{i}.png", caption, split] if with_split else [f"p{i}.png", caption])
    return root


def test_coco_layout(tmp_path):
    records = coco(str(make_coco(tmp_path)))
    by_split = {s: [r for r in records if r.split == s] for s in ("train", "val", "test")}
    assert len(by_split["train"]) == 10 and len(by_split["val"]) + len(by_split["test"]) == 8
    assert by_split["val"] and by_split["test"] and all(len(r.captions) == 5 for r in records)
    assert records[0].path == tmp_path / "train2014" / "COCO_train2014_000000000001.jpg"


@pytest.mark.parametrize("folder", ["Flicker8k_Dataset", "Images"])
def test_flickr8k_layout_either_image_folder(tmp_path, folder):
    records = flickr8k(str(make_flickr8k(tmp_path, folder)))
    assert [sum(r.split == s for r in records) for s in ("train", "val", "test")] == [10, 2, 2]
    assert all(r.path.parent.name == folder and len(r.captions) == 5 for r in records)


def test_karpathy_restval_counts_as_train(tmp_path):
    records = karpathy(str(make_karpathy(tmp_path) / "dataset_coco.json"), str(tmp_path / "images"))
    assert sum(r.split == "train" for r in records) == 10 and records[0].image_id == 100
    assert all(r.extra == {} for r in records)  # nothing beyond the standard fields


def test_karpathy_fields_beyond_the_standard_ones_are_kept_as_extra(tmp_path):
    split_file = make_karpathy(tmp_path) / "dataset_coco.json"
    data = json.loads(split_file.read_text())
    data["images"][0] |= {"attributes": {"objects": []}, "sentids": [1, 2], "licence": 3}
    split_file.write_text(json.dumps(data))
    record = karpathy(str(split_file), str(tmp_path / "images"))[0]
    assert record.extra == {"attributes": {"objects": []}, "licence": 3}


def test_csv_with_and_without_a_split_column(tmp_path):
    with_split = caption_csv(str(make_csv(tmp_path, True) / "captions.csv"), str(tmp_path / "pictures"))
    assert [sum(r.split == s for r in with_split) for s in ("train", "val", "test")] == [10, 3, 3]
    (tmp_path / "b").mkdir()
    seeded = caption_csv(str(make_csv(tmp_path / "b", False) / "captions.csv"), str(tmp_path / "b" / "pictures"),
                         val_fraction=0.25, test_fraction=0.25, seed=1)
    again = caption_csv(str(tmp_path / "b" / "captions.csv"), str(tmp_path / "b" / "pictures"), 0.25, 0.25, seed=1)
    assert [r.split for r in seeded] == [r.split for r in again]
    assert {r.split for r in seeded} == {"train", "val", "test"}
    assert all(len(r.captions) == 5 for r in seeded)


def test_a_csv_saved_by_excel_with_a_byte_order_mark_reads_as_any_other(tmp_path):
    make_csv(tmp_path, True)
    plain = caption_csv(str(tmp_path / "captions.csv"), str(tmp_path / "pictures"))
    (tmp_path / "excel.csv").write_bytes(b"\xef\xbb\xbf" + (tmp_path / "captions.csv").read_bytes())
    assert caption_csv(str(tmp_path / "excel.csv"), str(tmp_path / "pictures")) == plain


@pytest.mark.parametrize("content, message", [
    (b"image,caption\np0.png,a red circle\np1.png,\n", "excel.csv: row 3 has no caption"),
    (b"image,caption\np0.png,a red circle\np1.png\n", "excel.csv: row 3 has no caption"),
    (b"image,caption\n,a red circle\n", "excel.csv: row 2 has no image"),
    (b"image,caption\np0.png,a caf\xe9\n", "excel.csv: not UTF-8 \\(a byte 0xe9\\); save it as UTF-8"),
])
def test_a_csv_row_that_cannot_be_read_is_named_in_one_line(tmp_path, content, message):
    (tmp_path / "excel.csv").write_bytes(content)
    with pytest.raises(CaptionerError, match=message) as raised:
        caption_csv(str(tmp_path / "excel.csv"), str(tmp_path))
    assert "\n" not in str(raised.value) and len(str(raised.value)) < 200


def test_missing_pieces_are_named_with_where_they_were_looked_for(tmp_path):
    with pytest.raises(CaptionerError, match="captions_train2014.json: COCO caption annotations not found"):
        coco(str(tmp_path))
    with pytest.raises(CaptionerError, match="Flickr8k.token.txt: Flickr8k captions not found"):
        flickr8k(str(tmp_path))
    with pytest.raises(CaptionerError, match="captions.csv: caption CSV not found"):
        caption_csv(str(tmp_path / "captions.csv"), str(tmp_path))
    root = make_coco(tmp_path / "coco")
    (root / "val2014" / "COCO_val2014_000000005003.jpg").unlink()
    with pytest.raises(CaptionerError, match=r"1 of 18 images not found in .*val2014 \(e.g. .*000000005003.jpg\)"):
        coco(str(root))


def test_preresize_writes_smaller_copies_once(tmp_path):
    root = make_coco(tmp_path / "coco")
    records = coco(str(root), preresize=24, cache_dir=str(tmp_path / "cache"))
    assert all(r.path.parent == tmp_path / "cache" for r in records)
    from PIL import Image

    with Image.open(records[0].path) as image:
        assert min(image.size) == 24
    before = records[0].path.stat().st_mtime_ns
    coco(str(root), preresize=24, cache_dir=str(tmp_path / "cache"))
    assert records[0].path.stat().st_mtime_ns == before


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["coco", "karpathy", "flickr8k", "csv"])
def test_train_two_steps_then_caption_with_the_data_moved_away(tmp_path, fmt):
    data = tmp_path / "data"
    data.mkdir()
    if fmt == "coco":
        overrides = [f"data.root={make_coco(data)}"]
    elif fmt == "karpathy":
        overrides = [f"data.split_file={make_karpathy(data) / 'dataset_coco.json'}",
                     f"data.image_dir={data / 'images'}"]
    elif fmt == "flickr8k":
        overrides = [f"data.root={make_flickr8k(data)}"]
    else:
        overrides = [f"data.file={make_csv(data, False) / 'captions.csv'}", f"data.image_dir={data / 'pictures'}",
                     "data.val_fraction=0.25", "data.test_fraction=0.25", "data.seed=1"]
    run = tmp_path / "run"
    result = cli("train", f"data={fmt}", *overrides, "model.image_size=32", "model.encoder.stage=layer1",
                 "model.decoder.hidden_dim=16", "model.decoder.embed_dim=8", "trainer.max_steps=2",
                 "trainer.batch_size=4", "trainer.device=cpu", "metrics.meteor=false", "show_examples=1",
                 f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads((run / "metrics.json").read_text())["step"] == 2
    photo = tmp_path / "photo.png"
    shutil.copy(next(data.rglob("*.png"), None) or next(data.rglob("*.jpg")), photo)
    shutil.move(data, tmp_path / "moved_away")
    captioned = cli("caption", f"checkpoint={run / 'model.pt'}", f"input={photo}", cwd=tmp_path)
    assert captioned.returncode == 0, captioned.stderr
    assert captioned.stdout.startswith(f"{photo}\t")


def test_a_results_file_with_a_null_caption_or_ids_as_strings_says_so(tmp_path):
    from captioner.evaluation import evaluate_files

    references = tmp_path / "references.json"
    references.write_text(json.dumps({"annotations": [{"image_id": 404464, "caption": "a cat on a mat"}]}))
    (tmp_path / "null.json").write_text(json.dumps([{"image_id": 404464, "caption": None}]))
    with pytest.raises(CaptionerError, match=r"null.json: image 404464 has the caption None: not text"):
        evaluate_files(tmp_path / "null.json", references, tmp_path / "out")
    (tmp_path / "strings.json").write_text(json.dumps([{"image_id": "404464", "caption": "a cat"}]))
    with pytest.raises(CaptionerError, match=r"strings.json: 1 image ids are not in .*references.json "
                                             r"\(e.g. '404464'\) \(COCO's ids are numbers: 404464, not \"404464\"\)"):
        evaluate_files(tmp_path / "strings.json", references, tmp_path / "out")
