"""`mlc server`: the volunteer computing server. An HTTP API (FastAPI) over the coordinator service,
with its daemons, on SQLite or PostgreSQL; several experiments at once, each with its dataset under
the server's folder.

Importing this package loads the web stack but not torch: the lease and upload path needs none.
"""

from mlc.server._app import create_app
from mlc.server._serve import serve
from mlc.server._settings import ROLES, ServerSettings

__all__ = ["ROLES", "ServerSettings", "create_app", "serve"]
