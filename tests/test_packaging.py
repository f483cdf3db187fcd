"""The wheel carries the package and its Hydra configs: installed outside the checkout, the CLIs compose."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest
from conftest import ROOT


@pytest.mark.slow
def test_wheel_carries_the_configs_and_its_cli_reads_them(tmp_path):
    dist, site = tmp_path / "dist", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(ROOT)], check=True)
    wheel = next(dist.glob("captioner-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    configs = {f"captioner/conf/{p.relative_to(ROOT / 'conf').as_posix()}" for p in (ROOT / "conf").rglob("*.yaml")}
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "captioner").rglob("*.py")}
    assert "captioner/serve/page.html" in names  # the upload page, read as package data
    assert configs and configs <= names
    assert modules <= names

    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    env = {**os.environ, "PYTHONPATH": str(site)}  # ahead of the checkout's editable install
    where = subprocess.run([sys.executable, "-c", "from captioner.cli.config import CONFIG_PATH; print(CONFIG_PATH)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip() == str(site / "captioner" / "conf")
    job = subprocess.run([sys.executable, "-m", "captioner.cli.train", "--cfg", "job", "experiment=demo"],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert job.returncode == 0, job.stderr
    assert "word_prior: true" in job.stdout
