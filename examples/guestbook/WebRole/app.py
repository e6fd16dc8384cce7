"""The guestbook's web site: a tiny WSGI app (stdlib only). A later issue grows it."""

import html
import os


def application(environ, start_response):
    """Answer every request with a short page naming the instance that served it."""
    instance = os.environ.get("CUMULO_INSTANCE_ID", "unknown instance")
    body = f"<h1>Guestbook</h1><p>Served by {html.escape(instance)}.</p>\n".encode()
    start_response(
        "200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))]
    )
    return [body]
