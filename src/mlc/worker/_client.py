"""The worker's HTTP client: the server's API as methods, with retries where retrying helps.

A connection that fails, a timeout, a 5xx or a 503 (the database is busy) is retried with exponential
backoff and full jitter (so thousands of hosts coming back after an outage do not all knock at once),
for as long as `patience_s` allows; a 4xx is the server saying no, and is raised at once as an
`mlc.errors` error with the server's reason.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_random_exponential,
)

from mlc.errors import ConfigError, PermanentError, ResultRejected, StoreBusy, TransientError
from mlc.protocol import (
    API_PREFIX,
    ExtendResponse,
    HostDescription,
    LeaseResponse,
    LinkResponse,
    RegisterResponse,
    UploadResponse,
)

__all__ = ["HostTokenRefused", "ServerClient", "ServerUnreachable"]

_log = logging.getLogger("mlc.worker")


class ServerUnreachable(TransientError):
    """The server did not answer (or answered 5xx) for as long as the client was willing to wait."""


class HostTokenRefused(PermanentError):
    """The server does not know this host's token (its database was replaced): register again."""


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code >= 500


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    _log.warning("server unreachable (%s); retrying in %.0f s", _describe(exc), wait)


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    return type(exc).__name__ if exc else "unknown"


class ServerClient:
    """Calls to the server at `url` as the host with `token`; `patience_s` bounds how long one call
    keeps retrying a server that is down; `transport` lets tests put an httpx transport in between."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        patience_s: float = 600.0,
        max_backoff_s: float = 60.0,
        timeout_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.patience_s = patience_s
        self.max_backoff_s = max_backoff_s
        self._http = httpx.Client(base_url=self.url + API_PREFIX, timeout=timeout_s, transport=transport)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        headers.update(kwargs.pop("headers", {}))
        retrying = Retrying(
            retry=retry_if_exception(_transient),
            wait=wait_random_exponential(multiplier=1, max=self.max_backoff_s),
            stop=stop_after_delay(self.patience_s),
            before_sleep=_log_retry,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    response = self._http.request(method, path, headers=headers, **kwargs)
                    response.raise_for_status()
                    return response
        except httpx.HTTPStatusError as exc:
            raise self._refusal(exc.response) from None
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"{self.url} did not answer for {self.patience_s:.0f} s: {exc}") from None
        raise AssertionError("unreachable")  # Retrying either returns or raises

    def _refusal(self, response: httpx.Response) -> Exception:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        code = response.status_code
        if code >= 500:
            return ServerUnreachable(f"{self.url} answered {code} for {self.patience_s:.0f} s: {detail}")
        if code == 401:
            return HostTokenRefused(f"the server refused this host's token ({detail})")
        if code == 422:
            return ResultRejected("refused", str(detail))
        if code == 409:
            return StoreBusy(str(detail)) if "busy" in str(detail) else ConfigError(str(detail))
        return ConfigError(f"the server refused the request ({code}): {detail}")

    def register(
        self,
        name: str,
        description: HostDescription,
        test_queue: bool = False,
        account_key: str | None = None,
    ) -> RegisterResponse:
        body = {"name": name, "description": description.model_dump(), "test_queue": test_queue}
        if account_key is not None:
            body["account_key"] = account_key
        return RegisterResponse.model_validate(self._call("POST", "/hosts", json=body).json())

    def link_account(self, account_key: str) -> LinkResponse:
        """Link this host to the volunteer account whose key this is (its credit counts for it)."""
        response = self._call("PUT", "/hosts/me/account", json={"account_key": account_key})
        return LinkResponse.model_validate(response.json())

    def lease(self, max_networks: int, description: HostDescription | None = None) -> LeaseResponse:
        body: dict[str, Any] = {"max_networks": max_networks}
        if description is not None:
            body["description"] = description.model_dump()
        return LeaseResponse.model_validate(self._call("POST", "/work/lease", json=body).json())

    def extend(self, wu_ids: list[str]) -> ExtendResponse:
        return ExtendResponse.model_validate(
            self._call("POST", "/work/extend", json={"wu_ids": wu_ids}).json()
        )

    def upload(self, wu_id: str, blob: bytes) -> UploadResponse:
        headers = {"Content-Type": "application/octet-stream"}
        response = self._call("PUT", f"/results/{wu_id}", content=blob, headers=headers)
        return UploadResponse.model_validate(response.json())
