"""The docs as a reader meets them: every link leads somewhere, and every command works as written.

A command that needs only the demo model (or files a user has at hand) runs in a shell, in a folder
laid out as the docs assume, with a small model as the demo's; the server answers the curl examples;
every other command (training, extraction, clusters) composes its config with Hydra (``--cfg job``)."""

from __future__ import annotations

import inspect
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_if, wait_until_serving

from captioner.synthetic.dataset import SPLIT_FILE, synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
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


ALL_COMMANDS = list(dict.fromkeys(c for page in PAGES for c in shell_commands(page.read_text())))
RUN_COMMANDS = [c for c in ALL_COMMANDS if runnable(c)]
SERVE_COMMANDS = [c for c in shell_commands((ROOT / "README.md").read_text())
                  if c.startswith("captioner-serve") or c.startswith("curl ")]
CONFIG_COMMANDS = [c for c in ALL_COMMANDS if c not in RUN_COMMANDS and c not in SERVE_COMMANDS
                   and re.match(r"(captioner-|torchrun .*-m captioner\.cli\.)", c)]


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
    few_synthetic_scenes(here / "data" / "synthetic")
    return here


def few_synthetic_scenes(root: Path) -> None:
    """The built-in dataset where ``data=synthetic`` looks, marked as made with the default settings but
    with 40 validation and test scenes: the evaluate commands run as written, on fewer images."""
    synthetic_dataset(root, num_train=8, num_val=40, num_test=40)
    split_file = root / SPLIT_FILE
    content = json.loads(split_file.read_text())
    defaults = inspect.signature(synthetic_dataset).parameters
    content["settings"] |= {k: defaults[k].default for k in ("num_train", "num_val", "num_test")}
    split_file.write_text(json.dumps(content))


def test_the_docs_have_the_commands_a_new_user_runs_first():
    assert sum(c.startswith("captioner-caption") for c in RUN_COMMANDS) >= 3
    assert any(c.startswith("captioner-tag") for c in RUN_COMMANDS)
    assert any(c.startswith("captioner-evaluate") for c in RUN_COMMANDS)


ENVIRONMENT = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


@pytest.mark.parametrize("command", RUN_COMMANDS)
def test_a_command_runs_as_written(layout, command):
    result = subprocess.run(["bash", "-c", command], cwd=layout, env=ENVIRONMENT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "error:" not in result.stderr
    for written in re.findall(r"\boutput=(\S+)", command):
        assert (layout / written).stat().st_size > 0


@run_if(curl=True)
def test_the_readme_server_answers_its_curl_examples(layout):
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


def as_config_check(command: str) -> list[str]:
    """``command`` as a composition of its config: the module run by ``python -m``, ``--cfg job``, and a
    sweep's first value for each swept option (a multirun composes each job the same way)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    words = shlex.split(os.path.expandvars(command))
    module = (f"captioner.cli.{words[0].removeprefix('captioner-')}" if words[0].startswith("captioner-")
              else words[words.index("-m") + 1])
    overrides = [w for w in words[1:] if "=" in w and not w.startswith("-")]
    parser, checked = OverridesParser.create(), []
    for override in overrides:
        parsed = parser.parse_overrides([override])[0]
        if parsed.is_sweep_override():
            override = f"{parsed.get_key_element()}={parsed.value().list[0]}"
        checked.append(override)
    return [sys.executable, "-m", module, *checked, "--cfg", "job"]


@pytest.mark.parametrize("command", CONFIG_COMMANDS)
def test_a_command_that_trains_composes_its_config(command, tmp_path):
    result = subprocess.run(as_config_check(command), cwd=tmp_path, env=ENVIRONMENT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def headings(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings."""
    return {re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
            for title in re.findall(r"^#+ (.*)$", page.read_text(), flags=re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_leads_somewhere(page):
    links = re.findall(r"\]\(([^)\s]+)\)", page.read_text())
    for link in links:
        if re.match(r"https?://", link):
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{page.name}: {link} leads nowhere"
        if anchor and path.suffix == ".md":
            assert anchor in headings(path), f"{page.name}: no heading #{anchor} in {path.name}"
