"""HTTP for the project's own requests: credentials stay with their origin, and every request is bounded.

A :class:`Session` belongs to one origin (scheme, host and port of its base URL). Its credentials (headers
from the environment, or ``user:password@`` in the base URL, which becomes a Basic header and is removed from
the URL) go only to that origin: a request or a redirect to any other origin, or to the same host over
another scheme, is sent without them. Only GET and HEAD follow redirects (at most :data:`MAX_REDIRECTS`); for
other methods a redirect is answered as it is, so a caller never reports a POST as done that the server sent
elsewhere. Every request has a per-operation timeout and a total deadline that covers a server trickling its
answer, and a cap on the bytes it reads. Every credential is registered for redaction
(:mod:`kappamask_core.foundation.redaction`) and never appears in an error message.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urljoin, urlsplit, urlunsplit

from ..foundation.errors import InputError
from ..foundation.redaction import add_secret, redact

TIMEOUT_S = 30.0  # per network operation (connect, each read)
DEADLINE_S = 300.0  # for a whole request, its redirects and its body
MAX_BYTES = 256 << 20  # the largest answer read into memory
MAX_REDIRECTS = 5
REDIRECTS = (301, 302, 303, 307, 308)
CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "cookie")


class NetworkError(InputError):
    """A request failed, timed out or was refused before an answer came (the message names the URL, never a
    credential)."""


def parse_url(url: str) -> SplitResult:
    """``url`` split into its parts; one that cannot be parsed (an unclosed IPv6 bracket, a port that is not a
    number) is a :class:`NetworkError`, whoever gave it (an option, a page's link, a redirect)."""
    try:
        parts = urlsplit(url)
        parts.port  # parsed on access: a port that is not a number fails here
    except ValueError as exc:
        raise NetworkError(f"{redact(url)} is not a valid URL ({exc})") from None
    return parts


def join_url(base: str, link: str) -> str:
    """``link`` (a redirect's Location, a page's href) resolved against ``base``, checked like :func:`parse_url`."""
    try:
        joined = urljoin(base, link)
    except ValueError as exc:
        raise NetworkError(f"{redact(link)} (from {redact(base)}) is not a valid URL ({exc})") from None
    parse_url(joined)
    return joined


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL; the port defaults by scheme."""
    parts = parse_url(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(scheme, 0)


def split_userinfo(url: str) -> tuple[str, dict]:
    """``url`` without ``user:password@`` and the Basic Authorization header it stood for (the password is
    registered as a secret); ``({}`` where the URL has none)."""
    parts = parse_url(url)
    if parts.username is None and parts.password is None:
        return url, {}
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    add_secret(password)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    add_secret(token)
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), {
        "Authorization": f"Basic {token}"}


def check_header_values(headers: dict, where: str) -> dict:
    """Headers with text values free of line breaks and control characters (which would end a header early or
    smuggle another): anything else is refused with the header's name, never its value. Every value is
    registered as a secret: these are credentials."""
    clean = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not name or any(c in name for c in "\r\n:") or not name.isprintable():
            raise InputError(f"{where}: header name {name!r} is not a valid HTTP header name")
        if not isinstance(value, str):
            raise InputError(f"{where}: the value of header {name} must be text")
        add_secret(value)
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise InputError(f"{where}: the value of header {name} holds a line break or another control character "
                             "(it was not sent); set it again without one")
        if value.startswith("Bearer "):
            add_secret(value[len("Bearer "):])
        clean[name] = value
    return clean


@dataclass
class Response:
    status: int
    url: str  # the URL that answered (after redirects)
    headers: dict
    body: bytes

    def json(self, what: str):
        try:
            return json.loads(self.body)
        except ValueError:
            raise NetworkError(f"{what}: the answer from {redact(self.url)} is not JSON (HTTP {self.status}: "
                               f"{redact(self.body[:120].decode(errors='replace'))!r})") from None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects come back to :meth:`Session.request` as answers; it decides whether and how to follow."""

    def redirect_request(self, *args, **kwargs):
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


class Session:
    """Requests to one API: relative paths resolve against ``base_url``; credentials go to its origin only."""

    def __init__(self, base_url: str, headers: dict | None = None, *, timeout_s: float = TIMEOUT_S,
                 deadline_s: float = DEADLINE_S, max_bytes: int = MAX_BYTES, what: str = "the API"):
        base, userinfo = split_userinfo(base_url)
        parts = parse_url(base)
        if parts.scheme.lower() not in ("http", "https"):
            raise InputError(f"{redact(base_url)} is not an http(s) URL")
        # the folder relative paths resolve in: a query or fragment of the URL given belongs to that URL only
        # (a download's signature), never to the paths joined under it
        folder = parts.path if parts.path.endswith("/") else f"{parts.path}/"
        self.base = urlunsplit((parts.scheme, parts.netloc, folder, "", ""))
        self.origin = origin(self.base)
        self.credentials = check_header_values({**userinfo, **(headers or {})}, what)
        self.timeout_s, self.deadline_s, self.max_bytes, self.what = timeout_s, deadline_s, max_bytes, what
        self.requests = 0

    def url(self, path: str) -> str:
        return join_url(self.base, path)

    def headers_for(self, url: str) -> dict:
        """The credential headers ``url`` may receive: all of them at the session's origin, none elsewhere."""
        return dict(self.credentials) if origin(url) == self.origin else {}

    def request(self, method: str, path: str, body: object = None, *, accept: str = "application/json",
                deadline_s: float | None = None) -> Response:
        """One request (GET and HEAD follow redirects); any status comes back as a :class:`Response`."""
        method = method.upper()
        url = self.url(path)
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        deadline = time.monotonic() + (deadline_s or self.deadline_s)
        for _ in range(MAX_REDIRECTS + 1):
            if parse_url(url).scheme.lower() not in ("http", "https"):
                raise NetworkError(f"{self.what}: {redact(url)} is not an http(s) URL; not followed")
            headers = {"Accept": accept, "User-Agent": "kappamask", **self.headers_for(url)}
            if data is not None:
                headers["Content-Type"] = "application/json"
            response = self._send(urllib.request.Request(url, data=data, method=method, headers=headers), deadline)
            if response.status in REDIRECTS and method in ("GET", "HEAD") and "location" in response.headers:
                url = join_url(url, response.headers["location"])
                continue
            return response
        raise NetworkError(f"{self.what}: more than {MAX_REDIRECTS} redirects from {redact(self.url(path))}")

    @contextlib.contextmanager
    def stream(self, path: str, accept: str = "*/*") -> Iterator[http.client.HTTPResponse]:
        """GET ``path`` (redirects followed, credentials only to the session's origin) and yield the open answer
        of a 200, for the caller to read as it arrives (with its own deadline); any other status is an error."""
        url = self.url(path)
        for _ in range(MAX_REDIRECTS + 1):
            if parse_url(url).scheme.lower() not in ("http", "https"):
                raise NetworkError(f"{self.what}: {redact(url)} is not an http(s) URL; not followed")
            request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "kappamask",
                                                           **self.headers_for(url)})
            self.requests += 1
            try:
                answer = _OPENER.open(request, timeout=self.timeout_s)
            except urllib.error.HTTPError as exc:
                location = exc.headers.get("Location") if exc.headers else None
                exc.close()
                if exc.code in REDIRECTS and location:
                    url = join_url(url, location)
                    continue
                raise NetworkError(f"{self.what}: {redact(url)} answered HTTP {exc.code}") from None
            except (OSError, http.client.HTTPException, ValueError) as exc:
                reason = getattr(exc, "reason", None) or exc
                raise NetworkError(f"cannot reach {self.what} at {redact(url)} "
                                   f"({redact(' '.join(str(reason).split()))})") from None
            with answer:
                yield answer
            return
        raise NetworkError(f"{self.what}: more than {MAX_REDIRECTS} redirects from {redact(self.url(path))}")

    def _send(self, request: urllib.request.Request, deadline: float) -> Response:
        self.requests += 1
        url = request.full_url
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NetworkError(f"no answer from {self.what} at {redact(url)} within {self.deadline_s:.0f} s")
        try:
            try:
                answer = _OPENER.open(request, timeout=min(self.timeout_s, remaining))
            except urllib.error.HTTPError as exc:  # a status >= 300: an answer like any other
                answer = exc
            with answer:
                body = read_bounded(answer, deadline, self.max_bytes, f"{self.what} at {redact(url)}", self.timeout_s)
                status = answer.status if hasattr(answer, "status") and answer.status else answer.code
                headers = {k.lower(): v for k, v in answer.headers.items()} if answer.headers else {}
                return Response(status, url, headers, body)
        except NetworkError:
            raise
        except (OSError, http.client.HTTPException, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise NetworkError(f"cannot reach {self.what} at {redact(url)} "
                               f"({redact(' '.join(str(reason).split()))})") from None


def read_bounded(answer, deadline: float, max_bytes: int, what: str, timeout_s: float = TIMEOUT_S) -> bytes:
    """The body of an open HTTP answer, read as it arrives until the total ``deadline`` (a monotonic time) and at
    most ``max_bytes``: a server that trickles or never ends is given up on."""
    chunks: list[bytes] = []
    size = 0
    sock = getattr(getattr(getattr(answer, "fp", None), "raw", None), "_sock", None)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NetworkError(f"{what}: the answer was not complete within the deadline ({size} bytes arrived)")
        if isinstance(sock, socket.socket):
            sock.settimeout(min(timeout_s, remaining))
        block = answer.read1(1 << 16) if hasattr(answer, "read1") else answer.read(1 << 16)
        if not block:
            return b"".join(chunks)
        size += len(block)
        if size > max_bytes:
            raise NetworkError(f"{what}: the answer is larger than {max_bytes >> 20} MiB; not read")
        chunks.append(block)


def fetch(url: str, *, what: str, headers: dict | None = None, deadline_s: float = DEADLINE_S,
          max_bytes: int = MAX_BYTES) -> bytes:
    """GET ``url`` (redirects followed, credentials only to its own origin) and return the body of a 200 answer;
    any other status is a :class:`NetworkError` naming it."""
    clean, userinfo = split_userinfo(url)
    session = Session(clean, {**userinfo, **(headers or {})}, deadline_s=deadline_s, max_bytes=max_bytes, what=what)
    response = session.request("GET", clean, accept="*/*")
    if response.status != 200:
        raise NetworkError(f"{what}: {redact(response.url)} answered HTTP {response.status}")
    return response.body
