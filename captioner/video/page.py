"""The video page: ``STEM.html``, the video with its captions and shots, beside the other outputs.

An HTML5 ``<video>`` of the file with the captions as a ``kind="captions"`` track (``STEM.vtt``) and
the shots as a ``kind="chapters"`` track (``STEM.chapters.vtt``), a strip of the shots' keyframes
(``STEM_files/``) that seek the video when clicked, and the tags with the seconds they cover. Paths
are relative, so the folder can be moved (with the video beside it as it was) or served as it is.
A browser refuses ``<track>`` files to a page opened from ``file://`` (each file its own origin),
so the page carries the same WebVTT text and gives it to a track that failed to load. Everything
taken from the data is HTML-escaped.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from captioner.pictures.links import display_name, relative_href
from captioner.video.tagger import TaggedVideo, timecode

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1100px; }
h1 { font-size: 1.3em; margin: 0 0 .2em; }
.meta { color: #666; margin-bottom: .8em; }
video { width: 100%; max-height: 60vh; background: #000; }
.shots { display: flex; gap: 8px; overflow-x: auto; padding: 8px 0; }
.shot { flex: 0 0 auto; width: 168px; border: 2px solid transparent; background: #f4f4f4; padding: 4px;
        text-align: left; cursor: pointer; font: inherit; display: flex; flex-direction: column;
        justify-content: flex-start; }
.shot.current { border-color: #e0a800; }
.shot img { width: 160px; display: block; }
.shot .time { color: #a06f00; font-size: .85em; }
.shot .caption { display: block; font-size: .85em; }
ul.tags { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 6px; }
ul.tags li { background: #eef3ff; border-radius: 3px; padding: 1px 7px; }
ul.tags .seconds { color: #667; font-size: .85em; }
"""

_SCRIPT = """
const video = document.getElementById("video");
const vtt = JSON.parse(document.getElementById("webvtt").textContent);
for (const track of video.querySelectorAll("track")) {
  track.addEventListener("error", () => {  // a page opened from file:// may not fetch it: use the copy
    track.src = "data:text/vtt;charset=utf-8," + encodeURIComponent(vtt[track.kind]);
  }, {once: true});
}
video.textTracks[1].mode = "hidden";  // the chapters load (and seek) without being shown
const shots = Array.from(document.querySelectorAll(".shot"));
for (const shot of shots) {
  // a millisecond into the shot: at its very start the last shot's caption cue may still be showing
  shot.addEventListener("click", () => { video.currentTime = Number(shot.dataset.time) + 0.001; });
}
video.addEventListener("timeupdate", () => {
  let current = 0;
  shots.forEach((shot, n) => { if (Number(shot.dataset.time) <= video.currentTime + 1e-3) current = n; });
  shots.forEach((shot, n) => shot.classList.toggle("current", n === current));
});
"""


def video_page(tagged: TaggedVideo, page: Path, captions_vtt: Path, chapters_vtt: Path,
               keyframes: list[Path]) -> str:
    """The page's HTML, linking (relatively to ``page``) the video, both tracks and the keyframes'
    images (one per keyframe of ``tagged.keyframes``, in order)."""
    result, folder = tagged.result, page.parent
    name = display_name(result["video"])
    strip = "".join(
        f'<button type="button" class="shot" data-time="{shot_start(tagged, k["shot"])}">'
        f'<img src="{relative_href(folder, image)}" alt="shot {k["shot"] + 1}">'
        f'<span class="time">{timecode(shot_start(tagged, k["shot"]))}  shot {k["shot"] + 1}</span>'
        f'<span class="caption">{html.escape(k["caption"] or "(no caption)")}</span></button>'
        for k, image in zip(tagged.keyframes, keyframes))
    tags = "".join(f'<li>{html.escape(t["tag"])} <span class="seconds">{t["seconds"]:.1f} s</span></li>'
                   for t in result["tags"])
    vtt = {"captions": captions_vtt.read_text(encoding="utf-8"), "chapters": chapters_vtt.read_text(encoding="utf-8")}
    embedded = json.dumps(vtt).replace("<", "\\u003c")  # no "</script>" can end the block early
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{name}: captions and shots</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>{name}</h1>
<div class="meta">{timecode(result["duration"])}, {len(result["shots"])} shots, {len(result["segments"])} captioned
segments</div>
<video id="video" controls preload="metadata" src="{relative_href(folder, Path(result["video"]))}">
<track kind="captions" srclang="en" label="Captions" src="{relative_href(folder, captions_vtt)}" default>
<track kind="chapters" srclang="en" label="Shots" src="{relative_href(folder, chapters_vtt)}">
</video>
<h2>Shots</h2>
<div class="shots">{strip}</div>
<h2>Tags</h2>
<ul class="tags">{tags}</ul>
<script type="application/json" id="webvtt">{embedded}</script>
<script>{_SCRIPT}</script>
</body>
</html>
"""


def shot_start(tagged: TaggedVideo, shot: int) -> float:
    return tagged.result["shots"][shot]["start"]

