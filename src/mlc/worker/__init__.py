"""`mlc worker`: the volunteer client. It registers with a server, leases work units sized to its
device, trains them with the same runtime as a local run, and uploads the results.

It imports the science layers and the wire protocol only: no database, no web framework, no server
code, so a volunteer's machine never loads the server's stack.
"""

from mlc.worker._client import HostTokenRefused, ServerClient, ServerUnreachable
from mlc.worker._loop import Worker, WorkerSummary
from mlc.worker._progress import WorkerProgress
from mlc.worker._state import WorkerFolder

__all__ = [
    "HostTokenRefused",
    "ServerClient",
    "ServerUnreachable",
    "Worker",
    "WorkerFolder",
    "WorkerProgress",
    "WorkerSummary",
]
