"""A typed client of the management API (httpx). The CLI and the dashboard use only this.

``Client.from_environment()`` finds the platform: ``CUMULO_URL`` + ``CUMULO_TOKEN`` when set,
else the data directory (``$CUMULO_HOME``, default ``$XDG_DATA_HOME/cumulo`` or
``~/.local/share/cumulo``), whose ``api.json`` names the URL (and, for an API serving TLS with its
own certificate, the file to verify it with; ``CUMULO_CA`` says it for a remote API) and
``api-token`` holds the token.
Errors come back as ``cumulo.errors`` classes carrying the server's stable ``code``.
"""

from cumulo.client.client import Client, default_home, error_from_problem

__all__ = ["Client", "default_home", "error_from_problem"]
