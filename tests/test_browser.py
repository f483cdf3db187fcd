"""The pages in a real browser: headless Chromium driven by selenium, each page opened from disk.

Debian's ``chromium`` and ``chromium-driver`` (``make test`` installs them where it runs as root);
without them these tests skip, saying so. Screenshots are saved in each test's tmp dir.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
from conftest import cli, run_if, served, tiny_data

from captioner import Captioner
from captioner.pictures.report import write_report
from captioner.synthetic.videos import synthetic_videos
from captioner.video.export import export_all
from captioner.video.tagger import VideoTagger

pytestmark = [pytest.mark.slow, run_if(chromium=True)]

HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))))
    driver_path = shutil.which("chromedriver")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--mute-audio"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    yield driver
    driver.quit()


def wait_for(driver, script: str, timeout: float = 30):
    """Run ``script`` (returning a value) until it is truthy; -> that value."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: d.execute_script(script))


def images_loaded(driver) -> bool:
    driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")  # lazy images load when seen
    return wait_for(driver, "return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")


def test_the_video_page_plays_with_its_tracks_and_seeks_to_a_clicked_shot(browser, tiny_checkpoint, tmp_path):
    video = synthetic_videos(tmp_path / "videos", count=1, num_shots=4, shot_seconds=(1.5, 2.5))[0]
    with VideoTagger(Captioner.load(tiny_checkpoint)) as tagger:
        tagged = tagger.tag(video)
    tagged.keyframes[1]["caption"] = HOSTILE  # shown as text, never run
    page = export_all(tagged, tmp_path / "out", video.stem)[-1]
    browser.get(page.as_uri())
    wait_for(browser, "return document.getElementById('video').readyState >= 1")  # metadata read
    duration = browser.execute_script("return document.getElementById('video').duration")
    assert duration == pytest.approx(tagged.result["duration"], abs=0.15)
    cues = wait_for(browser, """const tracks = document.getElementById('video').textTracks;
        const counts = Array.from(tracks).map(t => t.cues ? t.cues.length : 0);
        return counts.every(n => n > 0) && counts""")
    assert cues == [len(tagged.result["segments"]), len(tagged.result["shots"])]  # captions, chapters
    assert images_loaded(browser)
    shots = browser.find_elements("css selector", ".shot")
    assert len(shots) == len(tagged.result["shots"])
    browser.execute_script("window.scrollTo(0, 0)")
    shots[2].click()
    start = tagged.result["shots"][2]["start"]
    wait_for(browser, f"return Math.abs(document.getElementById('video').currentTime - {start}) < 0.05")
    assert HOSTILE in shots[1].text and browser.execute_script("return window.pwned") is None
    browser.save_screenshot(str(tmp_path / "video_page.png"))


def test_the_report_sorts_by_cider_and_filters(browser, attention_checkpoint, tmp_path):
    result = cli("evaluate", f"checkpoint={attention_checkpoint}", *tiny_data(tmp_path), "report=true",
                 "metrics.meteor=false", "device=cpu", f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    scores = json.loads((tmp_path / "eval" / "image_scores.json").read_text())
    browser.get((tmp_path / "eval" / "report.html").as_uri())
    assert images_loaded(browser)

    def shown_cider() -> list[float]:
        return browser.execute_script("return Array.from(document.querySelectorAll('table.images tbody tr'))"
                                      ".filter(r => !r.hidden).map(r => Number(r.dataset.cider))")

    assert shown_cider() == sorted(s["CIDEr"] for s in scores)  # worst first
    browser.find_element("css selector", "button[data-sort=cider]").click()  # again: best first
    assert shown_cider() == sorted((s["CIDEr"] for s in scores), reverse=True)
    strips = browser.execute_script("return Array.from(document.links).filter(a => a.textContent === "
                                    "'where it looked').length")
    assert strips == len(scores)  # the attention model: a strip per image
    word = scores[0]["caption"].split()[-1]
    browser.find_element("id", "filter").send_keys(word)
    expected = sum(word in " ".join([s["caption"], *s["references"], s["path"].rsplit("/", 1)[-1]]).lower()
                   for s in scores)
    assert browser.find_element("id", "count").text == f"{expected} of {len(scores)} images"
    browser.save_screenshot(str(tmp_path / "report.png"))


def test_the_report_shows_hostile_captions_and_file_names_as_text(browser, tiny_records, tmp_path):
    hostile_file = tmp_path / f"{HOSTILE.replace('/', '_')}.png"
    shutil.copy(tiny_records[0].path, hostile_file)
    records = [replace(tiny_records[0], path=hostile_file, captions=[HOSTILE, "a plain reference"])]
    page = write_report(tmp_path / "report", {"CIDEr": 0.5}, records, [HOSTILE], [{"CIDEr": 0.5, "Bleu_4": 0.1}])
    browser.get(page.as_uri())
    assert images_loaded(browser)  # the file with that name too
    row = browser.find_element("css selector", "table.images tbody tr").text
    assert row.count(HOSTILE) == 2 and hostile_file.name in row  # caption and reference, as written
    assert browser.execute_script("return window.pwned") is None


def test_a_video_whose_name_is_not_utf8_is_tagged_and_its_page_plays(browser, trained, tmp_path):
    import os
    import subprocess
    import sys

    (made,) = synthetic_videos(tmp_path / "made", count=1, num_shots=2, shot_seconds=(1.0, 1.5))
    folder = tmp_path / "videos"
    folder.mkdir()
    name = os.fsdecode(b'cl\xe9 "q" <b>.webm')  # a Latin-1 byte, quotes and markup in one file name
    (folder / name).write_bytes(made.read_bytes())
    result = subprocess.run([sys.executable, "-m", "captioner.cli.tag", f"checkpoint={trained / 'run' / 'model.pt'}",
                             f"video={folder}", f"out_dir={tmp_path / 'out'}"], capture_output=True, cwd=tmp_path,
                            env=os.environ | {"PYTHONIOENCODING": "utf-8:strict"})  # a terminal that is strict
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert b'cl\\udce9 "q" <b>.webm: ' in result.stdout  # printed as the JSON outputs write it
    stem = os.fsdecode(b'cl\xe9 "q" <b>')
    assert json.loads((tmp_path / "out" / f"{stem}.json").read_text())["video"].endswith(name)
    browser.get((tmp_path / "out" / f"{stem}.html").as_uri())
    wait_for(browser, "return document.getElementById('video').readyState >= 1")  # the link reaches the file
    assert images_loaded(browser)
    assert browser.find_element("css selector", "h1").text == 'cl\ufffd "q" <b>.webm'  # shown as text


def test_the_upload_page_captions_a_chosen_file_and_shows_a_hostile_name_as_text(browser, attention_checkpoint,
                                                                                 tiny_records, tmp_path):
    name = '<img src=x onerror="window.pwned=1">.png'
    shutil.copy(tiny_records[0].path, tmp_path / name)
    expected = Captioner.load(attention_checkpoint).caption(tiny_records[0].path, beam_size=3)[0]
    with served(attention_checkpoint) as url:
        browser.get(f"{url}/")
        wait_for(browser, "return !document.getElementById('attention_option').hidden")  # the model attends
        browser.find_element("id", "files").send_keys(str(tmp_path / name))
        browser.find_element("id", "attention").click()
        browser.find_element("css selector", "button[type=submit]").click()
        caption = wait_for(browser, "const c = document.querySelector('.caption'); return c && c.textContent")
        assert caption == expected
        wait_for(browser, "const s = document.querySelector('.strip'); return s && s.complete && s.naturalWidth > 0")
        assert images_loaded(browser)
        assert browser.find_element("css selector", ".name").text == name
        assert browser.execute_script("return window.pwned") is None
        browser.save_screenshot(str(tmp_path / "upload_page.png"))
