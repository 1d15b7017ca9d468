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

A cached library is code this process will run, and a `.failed` marker switches the kernels off
with its text, so the cache is trusted only as far as nobody else could have written it: the
folder is made private (mode 0700), and it and every cached file must be owned by this user and
writable by nobody else (its ancestors by this user or root, and not writable by others unless
sticky, as /tmp is). Otherwise the kernels are built afresh in a private temporary folder, and
`build_note()` says why, for the run to show.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

import platformdirs
from filelock import FileLock

__all__ = ["NativeUnavailable", "build_note", "load"]

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


_notes: list[str] = []  # why this process built outside the shared cache


def build_note() -> str | None:
    """Why the kernels were built in a private folder instead of the shared cache, or None."""
    return _notes[-1] if _notes else None


def _untrusted(path: Path) -> str | None:
    """Why `path` (a cache folder or file) could have been written by someone else; None if it
    cannot (or does not exist)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return f"{path} is a symbolic link"
    if st.st_uid != os.geteuid():
        return f"{path} is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()})"
    if st.st_mode & 0o022:
        return f"{path} is writable by others (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def _untrusted_ancestor(folder: Path) -> str | None:
    for parent in folder.parents:
        st = parent.stat()
        if st.st_uid not in (os.geteuid(), 0):
            return f"{parent} is owned by uid {st.st_uid}"
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            return f"{parent} is writable by others (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def _private_folder(why: str) -> Path:
    """A fresh folder only this process knows, removed at exit (a loaded library stays mapped)."""
    _notes.append(f"built in a private folder: {why}")
    folder = Path(tempfile.mkdtemp(prefix="mlc-native-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _cache_folder() -> Path:
    """The shared cache, made private to the user, or a private folder saying why it is not used."""
    cache = Path(platformdirs.user_cache_dir("mlc")) / "native"
    try:
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        return _private_folder(f"cannot make the cache {cache} ({exc.strerror or exc})")
    why = _untrusted(cache) or _untrusted_ancestor(cache)
    if not why:
        cache.chmod(0o700)  # one made by an older version: 0755 hid nothing, yet nothing needs it
    return _private_folder(f"the kernel cache is not private ({why})") if why else cache


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
    cache = _cache_folder()
    target = cache / f"kernels-{key}.so"
    cached = (target, target.with_suffix(".failed"), Path(f"{target}.lock"))
    why = next(filter(None, map(_untrusted, cached)), None)
    if why:  # a library or marker someone else could have planted: neither run nor believed
        target = _private_folder(f"a cached file is not trusted ({why})") / target.name
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
            failed.chmod(0o644)
            raise NativeUnavailable(message)
        out.chmod(0o755)  # whatever the umask: a group-writable library would not be trusted again
        os.replace(out, target)
