"""Lazy package exports: a subpackage names its public API eagerly, but loads a module only when one
of its names is first used.

Why: the lease and report path of a server (and `mlc --help`) must not pay for torch. A package whose
`__init__` imported every submodule would load torch for `from mlc.work import WorkUnitSpec`, because
importing any submodule first runs the package's `__init__`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`, where `exports` maps each public name to the
    submodule (relative, e.g. "_run") that defines it. A name is imported on first access and then
    cached in the package, so later lookups cost nothing."""

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
