"""captioner-tag: tag video files (a file, a folder or a glob) with a captioning model.

The model loads (``torch`` imports) in a thread while the first video is already being read by its
analysis process, so the start-up is paid once per command and mostly hidden."""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from omegaconf import DictConfig

from captioner.cli.config import model_settings, typed, user_errors
from captioner.cli.overrides import command
from captioner.decode_options import DecodeOptions
from captioner.io import check_writable
from captioner.paths import expand_inputs, output_names
from captioner.video.export import export_all
from captioner.video.frames import VIDEO_EXTENSIONS, VideoError
from captioner.video.tagger import TagOptions, VideoTagger


def run(checkpoint: str, video: str, out_dir: str = ".", options: TagOptions = TagOptions(),
        decode: DecodeOptions = DecodeOptions(), device: str = "auto", progress: bool = True,
        resume: bool = False, rerank: dict | None = None, head: dict | None = None) -> dict:
    """Tag every video; a bad one is reported on one line and the rest go on. ``resume``: a video whose
    page (written last) is already in ``out_dir`` is skipped, so an interrupted folder goes on where it was.
    ``rerank``, ``head``: as :meth:`Captioner.load` takes them."""
    paths = expand_inputs(video, VIDEO_EXTENSIONS)
    names = output_names(paths)
    check_writable(Path(out_dir) / f"{names[0]}.json", paths)  # before any work
    if resume:
        todo = [(path, name) for path, name in zip(paths, names) if not (Path(out_dir) / f"{name}.html").is_file()]
        print(f"resume: {len(paths) - len(todo)} of {len(paths)} videos already tagged in {out_dir}", file=sys.stderr)
        if not todo:
            return {"tagged": 0, "failed": 0}
        paths, names = (list(column) for column in zip(*todo))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-loader") as pool:
        model = pool.submit(_load, checkpoint, device, rerank, head)
        with VideoTagger(model, options, **asdict(decode)) as tagger:
            return _tag_all(paths, names, tagger, out_dir, progress)


def _load(checkpoint: str, device: str, rerank: dict | None, head: dict | None):
    from captioner.api import Captioner
    from captioner.devices import resolve_device

    return Captioner.load(checkpoint, resolve_device(device), rerank=rerank, head=head)


def _tag_all(paths: list[Path], names: list[Path], tagger: VideoTagger, out_dir: str, progress: bool) -> dict:
    """Tag ``paths`` in turn, writing each one's outputs under ``out_dir`` as its name in ``names``."""
    failed: list[tuple[Path, str]] = []
    for number, path in enumerate(paths):
        try:
            tagged = tagger.tag(path, progress=progress, then=paths[number + 1] if number + 1 < len(paths) else None)
        except VideoError as error:
            print(f"error: {error}", file=sys.stderr)
            failed.append((path, error.reason))
            continue
        written = export_all(tagged, out_dir, str(names[number]))
        result = tagged.result
        print(f"{path}: {result['duration']:.1f} s, {len(result['shots'])} shots, {len(result['segments'])} segments, "
              f"tags: {', '.join(t['tag'] for t in result['tags'][:8])}")
        print("  wrote " + "  ".join(str(p) for p in written))
    tagger.model(wait=True)  # a bad checkpoint is reported even when every video was bad
    if failed and len(paths) > 1:
        print(f"{len(failed)} of {len(paths)} videos could not be tagged:", file=sys.stderr)
        for path, reason in failed:
            print(f"  {path}: {reason}", file=sys.stderr)
    return {"tagged": len(paths) - len(failed), "failed": len(failed)}


def video_path_shorthand(argv: list[str]) -> list[str]:
    """``video=PATH`` -> ``video.path=PATH``: ``video`` is also the config group of the tagging options."""
    return [f"video.path={arg[len('video='):]}" if arg.startswith("video=") and arg != "video=default" else arg
            for arg in argv]


@command("tag")
def _main(cfg: DictConfig) -> None:
    with user_errors():
        options = typed(TagOptions, {k: v for k, v in cfg.video.items() if k != "path"}, "video")
        decode = typed(DecodeOptions, cfg.decode, "decode")
        counts = run(cfg.checkpoint, str(cfg.video.path), cfg.out_dir, options, decode, cfg.device, resume=cfg.resume,
                     **model_settings(cfg))
    if counts["failed"]:
        sys.exit(1)


def main() -> None:
    sys.argv = video_path_shorthand(sys.argv)
    try:
        _main()
        status = 0
    except SystemExit as done:
        status = done.code if isinstance(done.code, int) else 0 if done.code is None else 1
        if isinstance(done.code, str):
            print(done.code, file=sys.stderr)
    # Every output is written and closed by now; the interpreter's own teardown of torch's modules
    # would add most of a second to each command (benchmarks/README.md, "Video tagging").
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    main()
