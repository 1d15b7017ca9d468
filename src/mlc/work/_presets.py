"""The shipped presets by name and preset files by path, as TOML text: what `mlc presets` lists
without loading torch (resolving a preset into a config is `_experiment`'s work, and imports the
models)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from mlc.errors import ConfigError, UnknownNameError

__all__ = ["describe_preset", "preset_names", "preset_text"]


def preset_names() -> tuple[str, ...]:
    files = resources.files("mlc.presets").iterdir()
    return tuple(sorted(f.name.removesuffix(".toml") for f in files if f.name.endswith(".toml")))


def _preset_text(name: str) -> str:
    return resources.files("mlc.presets").joinpath(f"{name}.toml").read_text()


def describe_preset(name: str) -> str:
    """The preset file's first comment line: what it is for, without resolving it."""
    for line in _preset_text(name).splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def preset_text(name_or_path: str) -> str:
    """The TOML text of a shipped preset (by name) or of a preset file (by path)."""
    path = Path(name_or_path)
    toml = path.suffix.lower() == ".toml"  # Base.TOML too
    if toml and path.is_file():
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"preset file {path} is not a TOML text file (byte {exc.start} is not UTF-8: "
                              "a binary or differently encoded file?)") from None
        except OSError as exc:
            raise ConfigError(f"cannot read the preset file {path}: {exc.strerror or exc}") from None
    if name_or_path in preset_names():
        return _preset_text(name_or_path)
    if toml:
        raise ConfigError(f"no preset file {name_or_path}: {'a folder' if path.exists() else 'no such file'}")
    raise UnknownNameError(
        f"unknown preset {name_or_path!r}: not a .toml file, and not one of {', '.join(preset_names())}"
    )
