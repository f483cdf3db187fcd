"""The README's commands run as written: each one that needs only the demo model (or files a user has
at hand) runs in a shell, in a folder laid out as the README assumes, with a small model as the demo's."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import wait_until_serving

README = Path(__file__).resolve().parents[1] / "README.md"
DEMO_MODEL = "checkpoint=outputs/demo/model.pt"

pytestmark = pytest.mark.slow


def shell_commands(markdown: str) -> list[str]:
    """The commands of the ``bash`` blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#\s.*$", "", line).strip()  # a comment after two spaces and '# '
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def runnable(command: str) -> bool:
    """A captioner command that needs nothing but the demo model and the files ``layout`` makes (and ends)."""
    return (command.startswith("captioner-") and not command.startswith("captioner-serve")
            and (DEMO_MODEL in command or "predictions=results.json" in command))


README_COMMANDS = [c for c in shell_commands(README.read_text()) if runnable(c)]
SERVE_COMMANDS = [c for c in shell_commands(README.read_text())
                  if c.startswith("captioner-serve") or c.startswith("curl ")]


@pytest.fixture(scope="module")
def layout(trained, media, tmp_path_factory) -> Path:
    """A folder as the README's reader has it after ``make demo``: the model, photos, videos, results."""
    here = tmp_path_factory.mktemp("readme")
    (here / "outputs" / "demo").mkdir(parents=True)
    shutil.copy(trained / "run" / "model.pt", here / "outputs" / "demo" / "model.pt")
    photos = sorted((media / "photos").glob("*.png"))
    shutil.copy(media / "photos" / "rocket.jpg", here / "photo.jpg")
    shutil.copy(media / "photos" / "rocket.jpg", here / "a.jpg")
    shutil.copy(photos[0], here / "b.png")
    for folder in ("my_folder", "millions", "shots/day1", "shots/day2"):
        (here / folder).mkdir(parents=True)
        for photo in photos[:3]:
            shutil.copy(photo, here / folder / photo.name)
    shutil.copy(media / "videos" / "realshort.mp4", here / "clip.mp4")
    (here / "my_videos").mkdir()
    shutil.copy(media / "videos" / "realshort.mp4", here / "my_videos" / "short.mp4")
    os.symlink(media / "coco" / "fakecap_results_subset134.json", here / "results.json")
    os.symlink(media / "coco" / "captions_val2014_subset134.json", here / "captions_val2014.json")
    return here


def test_the_readme_has_the_commands_a_new_user_runs_first():
    assert sum(c.startswith("captioner-caption") for c in README_COMMANDS) >= 3
    assert any(c.startswith("captioner-tag") for c in README_COMMANDS)
    assert any(c.startswith("captioner-evaluate") for c in README_COMMANDS)


ENVIRONMENT = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


@pytest.mark.parametrize("command", README_COMMANDS)
def test_a_readme_command_runs_as_written(layout, command):
    result = subprocess.run(["bash", "-c", command], cwd=layout, env=ENVIRONMENT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "error:" not in result.stderr
    for written in re.findall(r"\boutput=(\S+)", command):
        assert (layout / written).stat().st_size > 0


def test_the_readme_server_answers_its_curl_examples(layout):
    if not shutil.which("curl"):
        pytest.skip("no curl")
    (serve, *requests) = SERVE_COMMANDS
    port = re.search(r"\bport=(\d+)", serve).group(1)
    server = subprocess.Popen(["bash", "-c", f"exec {serve}"], cwd=layout, env=ENVIRONMENT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", server)
        assert len(requests) >= 2
        for command in requests:
            result = subprocess.run(["bash", "-c", command], cwd=layout, capture_output=True, text=True, timeout=120)
            assert result.returncode == 0, result.stderr
            answer = json.loads(result.stdout)
            answers = answer if isinstance(answer, list) else [answer]
            assert answers and all(a.get("caption") for a in answers), result.stdout
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=60)
    assert server.returncode == 0 and "Traceback" not in stderr, stderr
