"""torchvision, imported without importing ``torch._dynamo`` along with it.

torchvision's ``__init__`` imports every model family, detection ops included, and
``torchvision.ops.roi_align`` imports ``torch._dynamo.utils`` at module level for one helper it
calls only when the op runs. Importing dynamo (sympy, the symbolic-shape machinery) takes longer
than importing torch itself, and a captioner never compiles (pytorch/vision#8436, where torchvision
made that op's compilation lazy "to avoid eagerly importing dynamo"; pytorch/pytorch#162595). So
while torchvision is imported, ``torch._dynamo.utils`` is a stand-in whose names import the real
module when they are used; once the import is done the stand-ins are gone, and ``torch.compile``
or ``torch._dynamo`` import the real thing as they always do. Figures: benchmarks/README.md,
"Video tagging".
"""

from __future__ import annotations

import importlib
import sys
import types

import torch

_STAND_INS = ("torch._dynamo", "torch._dynamo.utils")


def _remove_stand_ins() -> None:
    for name in _STAND_INS:
        if getattr(sys.modules.get(name), "__stand_in__", False):
            del sys.modules[name]
    if getattr(torch.__dict__.get("_dynamo"), "__stand_in__", False):
        del torch._dynamo


def _real(name: str) -> types.ModuleType:
    _remove_stand_ins()
    return importlib.import_module(name)


def _stand_in(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes, __stand_in__=True, __path__=[])

    def real_attribute(attribute: str):
        if attribute.startswith("__"):  # what inspect asks of every module (__file__ ...): not there
            raise AttributeError(attribute)
        return getattr(_real(name), attribute)  # a name torchvision may come to import: the real module's

    module.__getattr__ = real_attribute
    return module


def _is_compile_supported(device_type: str) -> bool:
    return _real("torch._dynamo.utils").is_compile_supported(device_type)


def _import_torchvision() -> types.ModuleType:
    if "torchvision" not in sys.modules and "torch._dynamo" not in sys.modules:
        sys.modules["torch._dynamo"] = _stand_in("torch._dynamo")
        sys.modules["torch._dynamo.utils"] = _stand_in("torch._dynamo.utils",
                                                       is_compile_supported=_is_compile_supported)
    try:
        importlib.import_module("torchvision.models.feature_extraction")  # the encoder's; not imported by torchvision
        return importlib.import_module("torchvision")
    finally:
        _remove_stand_ins()


torchvision = _import_torchvision()
