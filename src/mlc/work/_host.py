"""Who computed a result: device kind and name, software versions, and a stable anonymous host id."""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import uuid
from pathlib import Path

import torch

from mlc.errors import ConfigError

__all__ = ["describe_device", "host_id", "kernel_class", "platform_string", "resolve_device", "torch_version"]


def resolve_device(requested: str) -> torch.device:
    """`auto` picks CUDA when present, else CPU; `cuda` without a GPU is an error, not a fallback."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cpu":
        return torch.device("cpu")
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {requested!r} was asked for (--device), but PyTorch sees no CUDA GPU here; "
                "use cpu or auto"
            )
        return torch.device(requested)
    raise ConfigError(f"unknown device {requested!r}; use auto, cpu or cuda")


def describe_device(device: torch.device) -> tuple[str, str]:
    """(kind, human-readable name) of a training device."""
    if device.type == "cuda":
        return "cuda", torch.cuda.get_device_name(device)
    return "cpu", platform.processor() or platform.machine() or "cpu"


def host_id() -> str:
    """A stable pseudonymous id for this machine: a hash, never the hostname itself."""
    machine_id = Path("/etc/machine-id")
    seed = machine_id.read_text().strip() if machine_id.exists() else f"{uuid.getnode():x}"
    return hashlib.sha256(f"{socket.gethostname()}:{seed}".encode()).hexdigest()[:16]


def kernel_class(device: torch.device, kernels: str) -> str:
    """The class of hosts that compute a work unit bit for bit alike (BOINC's homogeneous
    redundancy): the device kind, the kernel family that trained, and for the C kernels the vector
    instruction set they were built for (the build's MLC_NATIVE_ARCH, or what this CPU has)."""
    family = kernels.split(" ")[0] if kernels else "PyTorch"  # "C", "fused" (Triton), "PyTorch"
    if device.type != "cpu" or family != "C":
        return f"{device.type}/{family}"
    arch = os.environ.get("MLC_NATIVE_ARCH", "native")
    if arch == "native":
        flags = _cpu_flags()
        arch = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else platform.machine()
    return f"cpu/C/{arch}"


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith(("flags", "Features"))), "")
    return set(line.split(":", 1)[-1].split())


def platform_string() -> str:
    return f"{platform.system()}-{platform.machine()}-py{platform.python_version()}"


def torch_version() -> str:
    return torch.__version__
