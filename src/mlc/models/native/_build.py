"""Compile and load the package's C kernels (`mlc/models/native/`) with the system C compiler.

The kernels are plain C11 with no Python or PyTorch headers, so a build takes about a second and
needs only `cc`; they are called through ctypes, which releases the GIL for the call. Builds are
cached per source text, compiler, flags and CPU (the code is built for the host's instruction set
with `-march=native`), in the user cache directory, and written atomically under a file lock so
concurrent workers on one machine build once; a failed build is remembered the same way, so later
processes fall back at once instead of compiling again. Where no compiler works the caller falls back
to the PyTorch path. Environment: `MLC_NATIVE=0` forces that fallback, `CC` picks the compiler,
`MLC_NATIVE_ARCH` replaces `native` in `-march=`/`-mcpu=` (e.g. `x86-64-v3` for a cache shared by
different CPUs).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

import platformdirs
from filelock import FileLock

__all__ = ["NativeUnavailable", "load"]

_FLAGS = ("-O3", "-std=gnu11", "-ffp-contract=fast", "-fPIC", "-shared", "-Wall", "-Werror")


class NativeUnavailable(RuntimeError):
    """The C kernels cannot be used here; the message says why (shown when asked for explicitly)."""


def _arch_flags() -> tuple[str, ...]:
    arch = os.environ.get("MLC_NATIVE_ARCH", "native")
    return (f"-mcpu={arch}",) if platform.machine().lower() in ("arm64", "aarch64") else (f"-march={arch}",)


def _cpu_identity() -> str:
    """What `-march=native` depends on: the CPU model and feature flags where Linux lists them."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    keys = ("model name", "flags", "features", "cpu part")
    return "\n".join(sorted({ln for ln in lines if ln.split(":")[0].strip().lower() in keys}))


def _compiler() -> str:
    cc = os.environ.get("CC", "cc")
    path = shutil.which(cc)
    if path is None:
        raise NativeUnavailable(f"no C compiler: {cc!r} is not on PATH (set CC, or install gcc/clang)")
    return path


def _compiler_version(cc: str) -> str:
    out = subprocess.run([cc, "--version"], capture_output=True, text=True, errors="replace", timeout=30)
    return out.stdout.strip()


def _sources() -> dict[str, str]:
    folder = resources.files("mlc.models.native")
    return {f.name: f.read_text() for f in folder.iterdir() if f.name.endswith((".c", ".h"))}


@functools.cache
def load() -> ctypes.CDLL:
    """The kernel library (every `native/*.c` in one), built on first use; raises NativeUnavailable."""
    if os.environ.get("MLC_NATIVE", "1") == "0":
        raise NativeUnavailable("disabled by MLC_NATIVE=0")
    sources = _sources()
    cc = _compiler()
    flags = (*_FLAGS, *_arch_flags())
    parts = [f"{name}\0{text}" for name, text in sorted(sources.items())]
    key = hashlib.sha256(
        "\0".join([*parts, _compiler_version(cc), " ".join(flags), _cpu_identity()]).encode()
    ).hexdigest()[:20]
    cache = Path(platformdirs.user_cache_dir("mlc")) / "native"
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"kernels-{key}.so"
    failed = target.with_suffix(".failed")
    with FileLock(str(target) + ".lock"):
        if failed.exists():
            raise NativeUnavailable(failed.read_text())
        if not target.exists():
            _build(cc, flags, sources, target, failed)
        try:
            return ctypes.CDLL(str(target))
        except OSError:  # a damaged cache entry (a truncated copy, a full disk): build it again
            target.unlink()
            _build(cc, flags, sources, target, failed)
            return ctypes.CDLL(str(target))


def _build(cc: str, flags: tuple[str, ...], sources: dict[str, str], target: Path, failed: Path) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        for name, text in sources.items():
            (Path(tmp) / name).write_text(text)
        units = sorted(str(Path(tmp) / name) for name in sources if name.endswith(".c"))
        out = Path(tmp) / "kernels.so"
        result = subprocess.run(
            [cc, *flags, *units, "-o", str(out)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=300,
        )
        if result.returncode != 0:
            message = (
                f"{cc} failed to build the C kernels (remembered in {failed}; delete it to retry):\n"
                f"{result.stderr.strip()}"
            )
            failed.write_text(message)
            raise NativeUnavailable(message)
        os.replace(out, target)
