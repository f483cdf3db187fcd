"""torchvision is imported without torch._dynamo, and dynamo still works when it is wanted."""

from __future__ import annotations

import subprocess
import sys


def run(code: str, *args: str) -> str:
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_loading_a_model_leaves_dynamo_unimported_and_compiling_still_works(tiny_checkpoint):
    code = """
import sys, torch
from captioner import Captioner
Captioner.load(sys.argv[1])
print("torch._dynamo" in sys.modules, [n for n, m in sys.modules.items() if vars(m).get("__stand_in__")])
import torchvision
boxes = torchvision.ops.roi_align(torch.rand(1, 3, 8, 8), [torch.tensor([[0.0, 0.0, 4.0, 4.0]])], 2)
print(tuple(boxes.shape), torch.compile(lambda x: x * 2, backend="eager")(torch.ones(2)).tolist(),
      hasattr(torch._dynamo, "reset"))
"""
    assert run(code, str(tiny_checkpoint)).splitlines() == ["False []", "(1, 3, 2, 2) [2.0, 2.0] True"]


def test_a_torchvision_imported_before_is_the_one_used():
    code = """
import sys, torchvision
from captioner.torchvision_import import torchvision as ours
print(ours is torchvision, "torch._dynamo" in sys.modules, "torchvision.models.feature_extraction" in sys.modules)
"""
    assert run(code) == "True True True"
