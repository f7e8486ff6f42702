"""Small HTTP servers for the tests, on 127.0.0.1 or 127.0.0.2 (two origins on one machine), that record every
request they receive (headers included) and answer what a test's function says: a STAC API that sends its next
links elsewhere, redirects, echoes a token, trickles, or answers what a real API would."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    method: str
    path: str
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body) if self.body else None


@dataclass
class Answer:
    status: int = 200
    body: object = None  # a dict or list (sent as JSON), bytes, or an iterator of bytes (sent as they come)
    headers: dict = field(default_factory=dict)
    pause_s: float = 0.0  # between the parts of an iterator (a trickle)


@dataclass
class Server:
    url: str
    requests: list
    _server: ThreadingHTTPServer

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    def received(self, header: str) -> list:
        """The values of ``header`` (case-insensitive) in every request, None where it was absent."""
        return [next((v for k, v in r.headers.items() if k.lower() == header.lower()), None) for r in self.requests]


def serve(answer, host: str = "127.0.0.1") -> Server:
    """A server on ``host`` whose answer to each request is ``answer(request, server)`` (an :class:`Answer`)."""
    requests: list = []
    box: dict = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _any(self):
            length = int(self.headers.get("Content-Length") or 0)
            request = Request(self.command, self.path, dict(self.headers.items()), self.rfile.read(length))
            requests.append(request)
            reply = answer(request, box["server"])
            body = reply.body
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
            self.send_response(reply.status)
            headers = {"Content-Type": "application/json", **reply.headers}
            for name, value in headers.items():
                self.send_header(name, value)
            if isinstance(body, (bytes, type(None))):
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")
                return
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                for part in body:
                    self.wfile.write(part)
                    self.wfile.flush()
                    time.sleep(reply.pause_s)
            except OSError:  # the client gave up: what the test wants
                pass
            self.close_connection = True

        do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _any

    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    box["server"] = Server(f"http://{host}:{server.server_address[1]}", requests, server)
    return box["server"]


def landing(url: str) -> dict:
    """A STAC API landing page with item search."""
    return {"type": "Catalog", "id": "fake", "description": "fake STAC API", "stac_version": "1.1.0",
            "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"],
            "links": [{"rel": "self", "href": f"{url}/", "type": "application/json"},
                      {"rel": "root", "href": f"{url}/", "type": "application/json"},
                      {"rel": "search", "href": f"{url}/search", "type": "application/geo+json", "method": "GET"},
                      {"rel": "search", "href": f"{url}/search", "type": "application/geo+json", "method": "POST"}]}


def item(item_id: str) -> dict:
    """An item with no band assets: a search can return it; classifying it fails with one line."""
    return {"type": "Feature", "stac_version": "1.1.0", "id": item_id, "geometry": None, "links": [],
            "properties": {"datetime": "2020-01-01T00:00:00Z"}, "assets": {}}


def page(features: list, next_link: dict | None = None) -> dict:
    return {"type": "FeatureCollection", "features": features, "links": [next_link] if next_link else []}
