"""Writing a tagged video: STEM.json, STEM.vtt (WebVTT), STEM.srt, STEM_sheet.jpg, and the video page
STEM.html with its chapters track STEM.chapters.vtt and keyframes in STEM_files/, each atomically."""

from __future__ import annotations

import html
import json
import textwrap
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from captioner.io import atomic_open
from captioner.video.page import video_page
from captioner.video.tagger import TaggedVideo, timecode

SHEET_COLUMNS = 4
SHEET_MAX_TILES = 48  # more shots than this: evenly spread keyframes
TILE_WIDTH = 320
TEXT_LINES = 3
KEYFRAME_WIDTH = 320  # the page's keyframe images (shown at half: sharp on high-density screens)


def export_all(tagged: TaggedVideo, out_dir: str | Path, stem: str) -> list[Path]:
    """Write the files of one video, named ``stem`` + their suffix under ``out_dir`` (``stem`` may hold
    folders: :func:`captioner.paths.output_names`); returns their paths (the page last)."""
    out_dir = Path(out_dir)
    paths = [out_dir / f"{stem}.json", out_dir / f"{stem}.vtt", out_dir / f"{stem}.srt", out_dir / f"{stem}_sheet.jpg",
             out_dir / f"{stem}.chapters.vtt", out_dir / f"{stem}.html"]
    sheet = contact_sheet(tagged)  # everything computed before anything is written
    with atomic_open(paths[0]) as handle:
        json.dump(tagged.result, handle, indent=2)
        handle.write("\n")
    with atomic_open(paths[1]) as handle:
        handle.write(webvtt(tagged.result["segments"]))
    with atomic_open(paths[2]) as handle:
        handle.write(srt(tagged.result["segments"]))
    with atomic_open(paths[3], "wb") as handle:
        sheet.save(handle, format="JPEG", quality=88)
    with atomic_open(paths[4]) as handle:
        handle.write(chapters_webvtt(tagged))
    keyframes = [out_dir / f"{stem}_files" / f"shot_{k['shot'] + 1:04d}.jpg" for k in tagged.keyframes]
    for keyframe, image in zip(tagged.keyframes, keyframes):
        with atomic_open(image, "wb") as handle:
            _tile_image(keyframe["thumbnail"], KEYFRAME_WIDTH, _height(keyframe["thumbnail"], KEYFRAME_WIDTH)).save(
                handle, format="JPEG", quality=85)
    with atomic_open(paths[5]) as handle:
        handle.write(video_page(tagged, paths[5], paths[1], paths[4], keyframes))
    return paths


def webvtt(segments: list[dict]) -> str:
    cues = [f"{i}\n{timecode(s['start'])} --> {timecode(s['end'])}\n{vtt_text(_cue_text(s))}\n"
            for i, s in enumerate(segments, start=1)]
    return "WEBVTT\n\n" + "\n".join(cues)


def vtt_text(text: str) -> str:
    """Cue text as WebVTT wants it: ``&``, ``<`` and ``>`` escaped, so that a caption is shown as written."""
    return html.escape(text, quote=False)


def chapters_webvtt(tagged: TaggedVideo) -> str:
    """One cue per shot, named by its number and its keyframe's caption (for players' chapter menus)."""
    cues = []
    for number, shot in enumerate(tagged.result["shots"], start=1):
        caption = (shot.get("keyframe") or {}).get("caption") or ""
        title = vtt_text(" ".join(f"Shot {number}: {caption}".replace("-->", "->").split()))
        cues.append(f"{number}\n{timecode(shot['start'])} --> {timecode(shot['end'])}\n{title}\n")
    return "WEBVTT\n\n" + "\n".join(cues)


def srt(segments: list[dict]) -> str:
    return "\n".join(f"{i}\n{timecode(s['start'], ',')} --> {timecode(s['end'], ',')}\n{_cue_text(s)}\n"
                     for i, s in enumerate(segments, start=1))


def _cue_text(segment: dict) -> str:
    # "-->" and blank lines would end or break a cue; captions are plain words, but be safe
    return " ".join(segment["caption"].replace("-->", "->").split()) or "(no caption)"


def contact_sheet(tagged: TaggedVideo) -> Image.Image:
    """A grid of the shots' keyframes, each with its timecode, shot number and caption."""
    keyframes = [k for k in tagged.keyframes if k["thumbnail"] is not None]
    if len(keyframes) > SHEET_MAX_TILES:
        step = len(keyframes) / SHEET_MAX_TILES
        keyframes = [keyframes[int(i * step)] for i in range(SHEET_MAX_TILES)]
    font = ImageFont.load_default(size=14)
    line_height = 18
    result = tagged.result
    aspect = keyframes[0]["thumbnail"].shape[0] / keyframes[0]["thumbnail"].shape[1] if keyframes else 0.5625
    image_height = round(TILE_WIDTH * aspect)
    tile_height = image_height + 8 + line_height * (TEXT_LINES + 1)
    columns = max(1, min(SHEET_COLUMNS, len(keyframes)))
    rows = max(1, -(-len(keyframes) // columns))
    header = 34
    sheet = Image.new("RGB", (columns * (TILE_WIDTH + 8) + 8, header + rows * (tile_height + 8)), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    title = (f"{Path(result['video']).name}   {timecode(result['duration'])}   {len(result['shots'])} shots   "
             f"{len(result['segments'])} segments")
    draw.text((8, 8), title, fill=(255, 255, 255), font=ImageFont.load_default(size=16))
    for n, keyframe in enumerate(keyframes):
        x, y = 8 + (n % columns) * (TILE_WIDTH + 8), header + (n // columns) * (tile_height + 8)
        sheet.paste(_tile_image(keyframe["thumbnail"], TILE_WIDTH, image_height), (x, y))
        text_y = y + image_height + 4
        draw.text((x, text_y), f"{timecode(keyframe['time'])}   shot {keyframe['shot'] + 1}", fill=(255, 214, 90),
                  font=font)
        lines = textwrap.wrap(keyframe["caption"] or "(no caption)", width=40)[:TEXT_LINES]
        for i, line in enumerate(lines):
            draw.text((x, text_y + line_height * (i + 1)), line, fill=(235, 235, 235), font=font)
    return sheet


def _height(rgb: np.ndarray, width: int) -> int:
    return max(1, round(width * rgb.shape[0] / rgb.shape[1]))


def _tile_image(rgb: np.ndarray, width: int, height: int) -> Image.Image:
    return Image.fromarray(cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA))
