"""The wire protocol between `mlc server` and `mlc worker`: request and response models (pydantic).

Both sides import it; it imports nothing of the server (no database, no web framework) and nothing of
the trainer, so a volunteer's worker and the server's API process load only what they need. Work-unit
specs travel as their own JSON (`WorkUnitSpec.to_json`), results as safetensors bytes in an upload's
body, never as pickles.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "API_PREFIX",
    "AccountRequest",
    "AccountResponse",
    "DistrustRequest",
    "DistrustResponse",
    "ExperimentInfo",
    "ExtendRequest",
    "ExtendResponse",
    "HostDescription",
    "HostInfo",
    "LeaseRequest",
    "LeaseResponse",
    "LeasedUnit",
    "LinkRequest",
    "LinkResponse",
    "Problem",
    "RegisterRequest",
    "RegisterResponse",
    "ResultInfo",
    "ServerStatus",
    "SubmitRequest",
    "TaskProgress",
    "UploadResponse",
]

API_PREFIX = "/api/v1"
Device = Literal["cpu", "cuda"]


class _Strict(BaseModel):
    """Unknown fields are refused: a misspelt field is an error, not silently ignored. No text may
    hold a NUL character or an unpaired surrogate: neither can be stored (PostgreSQL refuses both)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _storable_text(self) -> _Strict:
        for name, value in self:
            for text in _texts(value):
                if "\x00" in text:
                    raise ValueError(f"{name} holds a NUL character")
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    raise ValueError(f"{name} holds an unpaired surrogate (not UTF-8 text)") from None
        return self


def _texts(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [t for item in value for t in _texts(item)]
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in (*_texts(k), *_texts(v))]
    return []


class Problem(_Strict):
    """Every 4xx and 5xx answer: what is wrong, in words that name the remedy."""

    detail: str


class HostDescription(_Strict):
    """What a host has, as it says itself (used to size and route work, never to grant credit)."""

    device: Device = "cpu"
    device_name: str = Field("", max_length=200)
    cpus: int = Field(1, ge=1, le=4096)
    memory_bytes: int = Field(0, ge=0)
    platform: str = Field("", max_length=200)
    torch_version: str = Field("", max_length=50)
    mlc_version: str = Field("", max_length=50)
    kernels: list[str] = Field(default_factory=list, max_length=16)  # paths that passed first runs
    # device kind + kernel path + instruction set (`mlc.work.kernel_class`): hosts of one class train
    # bit for bit alike, so they replicate each other's units; each judged result's own class wins
    kernel_class: str = Field("", max_length=200)


class RegisterRequest(_Strict):
    name: str = Field(..., min_length=1, max_length=200)
    description: HostDescription = Field(default_factory=HostDescription)
    test_queue: bool = False  # also take the test queue (new kernels and versions first)
    account_key: str | None = Field(None, max_length=200)  # the volunteer's, to credit this host to


class AccountRequest(_Strict):
    name: str = Field(..., min_length=1, max_length=200)  # shown on the project's pages
    email: str = Field(..., min_length=3, max_length=320)  # never shown; one account per address


class AccountResponse(_Strict):
    account_id: int
    account_key: str  # shown once; the server keeps only its SHA-256. Give it to `mlc worker`


class LinkRequest(_Strict):
    account_key: str = Field(..., min_length=1, max_length=200)


class LinkResponse(_Strict):
    host_id: int
    account_id: int
    account_name: str


class RegisterResponse(_Strict):
    host_id: int
    token: str  # shown once; the server keeps only its SHA-256


class LeaseRequest(_Strict):
    max_networks: int = Field(..., ge=1, le=1_000_000)  # what the host's memory holds at once
    description: HostDescription | None = None  # refreshed host facts, if they changed


class LeasedUnit(_Strict):
    wu_id: str
    spec_json: str  # WorkUnitSpec.to_json()
    state_b64: str | None = None  # a continuation's start state (safetensors), base64


class LeaseResponse(_Strict):
    units: list[LeasedUnit]
    lease_seconds: float
    retry_after_s: float  # when there is nothing to do: how long to wait before asking again
    finished: bool  # no experiment has work left or coming: a worker may exit (--exit-when-idle)


class ExtendRequest(_Strict):
    wu_ids: list[str] = Field(..., max_length=100_000)


class ExtendResponse(_Strict):
    held: list[str]  # the units still leased to this host; the others went elsewhere
    lease_seconds: float


class UploadResponse(_Strict):
    wu_id: str
    sha256: str
    outcome: Literal["accepted", "duplicate", "too_late"]


class ResultInfo(_Strict):
    """A host's view of its upload: the validator's verdict once it has judged it."""

    wu_id: str
    sha256: str
    verdict: Literal["pending", "valid", "invalid", "superseded"]
    reason: str | None


class TaskProgress(_Strict):
    task: str
    finished: int
    converged: int
    training: int
    failed: int


class ExperimentInfo(_Strict):
    name: str
    state: Literal["running", "paused", "cancelled", "finished"]
    queue: str
    preset: str
    n_networks: int
    finished: int
    converged: int
    training: int
    failed: int
    tasks: list[TaskProgress]
    dataset_dir: str


class HostInfo(_Strict):
    host_id: int
    name: str
    created_at: str
    last_seen_at: str
    description: HostDescription
    test_queue: bool
    units_leased: int
    trust: Literal["new", "trusted", "untrusted"]


class DistrustRequest(_Strict):
    reason: str = Field(..., min_length=1, max_length=500)  # kept with every result it voids


class DistrustResponse(_Strict):
    host: HostInfo
    units_reissued: int  # units voided and queued again, or withdrawn and retrained


class ServerStatus(_Strict):
    units: dict[str, int]  # work units by state
    results: dict[str, int]  # uploads by verdict
    hosts_total: int
    hosts_active_last_hour: int
    experiments: dict[str, int]  # by state
    daemons: list[dict[str, object]]  # heartbeats: name, owner, last_pass_at, age_s, passes, last_error


class SubmitRequest(_Strict):
    preset_toml: str = Field(..., max_length=1_000_000)  # a preset file's text (data, never code)
    networks_per_task: int | None = Field(None, ge=1)
    max_epochs: int | None = Field(None, ge=1)
    queue: Literal["cpu", "gpu", "test"] = "cpu"
