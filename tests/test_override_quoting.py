"""File names that Hydra's grammar cannot read unquoted: one line that gives the quoted form, which works."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from captioner.cli.overrides import command_line_problem, quoted

AWKWARD = ["it's.png", 'say "hi".png', "a,b.png", "a=b.png", "[x].png", "{x}.png", "a#b.png", "café.png",
           "a ${b}.png", "back\\slash.png", "ends in\\", 'quote\\"d.png', "tab\there.png", "x\udcff.png", "-x.png"]


@pytest.mark.parametrize("value", AWKWARD)
def test_a_quoted_value_reads_back_as_itself(value):
    parsed = OverridesParser.create().parse_overrides([f"input={quoted(value)}"])[0]
    assert OmegaConf.create({"input": parsed.value()}).input == value


def test_only_what_hydra_cannot_read_is_refused():
    assert command_line_problem(["checkpoint=model.pt", "input=a b.png", "decode.beam_size=3"]) is None
    assert command_line_problem(["-m", "decode.beam_size=1,3"]) is None  # a sweep, where one is meant
    assert "a comma makes a list" in command_line_problem(["input=a,b.png"])
    assert "Hydra cannot read this value" in command_line_problem(["--cfg", "job", "input=it's.png"])
    assert command_line_problem(["-m", "--cfg", "job", "x=1,2"]) == (
        "-m and --cfg cannot be given together: Hydra does one of them")


@pytest.mark.slow
def test_the_quoted_command_it_suggests_captions_the_file(trained, tmp_path):
    name = "it's [1], café #2 {x}.png"
    shutil.copy(next((trained / "data").rglob("*.png")), tmp_path / name)
    command = [sys.executable, "-m", "captioner.cli.caption", f"checkpoint={trained / 'run' / 'model.pt'}"]
    refused = subprocess.run([*command, f"input={name}"], cwd=tmp_path, capture_output=True, text=True)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    (line,) = refused.stderr.splitlines()
    assert line.startswith(f"error: input={name}: Hydra cannot read this value; to mean one value, quote it: ")
    suggested = line.rsplit("quote it: ", 1)[1]
    shell = subprocess.run(["bash", "-c", shlex.join(command) + " " + suggested],
                           cwd=tmp_path, capture_output=True, text=True)
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.startswith(f"{name}\t")
