"""Every URL the project takes from a user and writes or prints is checked here, by one rule, and joined as paths.

:func:`checked_url` parses a URL with :mod:`urllib.parse` and refuses, with one line that names the option and
says why (never the secret itself):

* whitespace, control characters and the characters a URL cannot hold unquoted (quotes, ``<>{}|\\^```): a link
  with them is broken where it is published, or ends a header or a line early;
* a scheme other than the ones the option takes (any case: ``HTTPS://`` is ``https://``) and a missing host;
* a user or password, unless the URL is an API the project itself sends them to (``credentials=True``): a base
  URL ends up in published links, records and processes, which everyone reads;
* a query string or a fragment in a base URL: paths are joined under it, so a query would swallow them and a
  fragment would cut them off; a query is also where signed URLs carry their signature (``?sig=``,
  ``?X-Amz-Signature=``, ``?token=``), which must never be published.

It returns the URL with its scheme and host in lower case and no trailing slash; :func:`join_path` puts path
segments under it, each quoted as one segment. Errors show the URL without its user, password and query values.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit, urlunsplit

from .errors import InputError
from .redaction import redact

__all__ = ["BASE_SCHEMES", "checked_url", "join_path"]

BASE_SCHEMES = ("http", "https")
# characters a URL cannot hold unquoted (RFC 3986): a link holding them breaks where it is published
_UNSAFE = set('"<>{}|\\^`\'')


def checked_url(url: object, option: str, *, schemes: tuple[str, ...] = BASE_SCHEMES, credentials: bool = False,
                base: bool = True) -> str:
    """``url`` checked by the rule in the module text; ``option`` names it in the error (e.g. ``--tiler-url``)."""
    if not isinstance(url, str) or not url:
        raise InputError(f"{option} must be a URL, not {url!r}")
    shown = _shown(url)
    bad = sorted({c for c in url if c.isspace() or ord(c) < 32 or ord(c) == 127 or c in _UNSAFE})
    if bad:
        named = ", ".join("a space" if c == " " else repr(c) for c in bad)
        raise InputError(f"{option} holds {named}, which a URL cannot hold unquoted ({shown!r}); quote them "
                         "(%20 for a space) or leave them out")
    try:
        parts = urlsplit(url)
        port = parts.port  # parsed on access: a port that is not a number fails here
    except ValueError as exc:
        raise InputError(f"{option} is not a valid URL ({exc}): {shown!r}") from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise InputError(f"{option} must be an {_schemes(schemes)} URL, not {shown!r}")
    if not parts.hostname:
        raise InputError(f"{option} names no host: {shown!r}")
    if (parts.username is not None or parts.password is not None) and not credentials:
        raise InputError(f"{option} must not hold a user or password ({shown}): what is written from it is "
                         "public; give credentials where the option's help says")
    if base and parts.query:
        raise InputError(f"{option} must not hold a query string ('?...', as signed URLs carry their signature): "
                         f"paths are joined under it and what is written from it is public ({shown})")
    if base and (parts.fragment or url.endswith("#")):
        raise InputError(f"{option} must not hold a fragment ('#...'): paths are joined under it ({shown})")
    host = parts.hostname.lower()
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port is not None else "")
    if credentials and (parts.username is not None or parts.password is not None):
        netloc = parts.netloc.rpartition("@")[0] + "@" + netloc
    path = parts.path.rstrip("/") if base else parts.path
    return urlunsplit((scheme, netloc, path, "" if base else parts.query, "" if base else parts.fragment))


def join_path(base: str, *segments: str) -> str:
    """``base`` (a URL :func:`checked_url` returned) with ``segments`` appended, each quoted as one path segment
    (a ``/`` inside one is quoted too: split a relative path first)."""
    return "/".join([base.rstrip("/"), *(quote(str(segment), safe="") for segment in segments)])


def _schemes(schemes: tuple[str, ...]) -> str:
    words = ["http(s)://"] if {"http", "https"} <= set(schemes) else []
    words += [f"{s}://" for s in schemes if s not in ("http", "https") or not words]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _shown(url: str) -> str:
    """``url`` as an error may show it: no user or password, no query values (a signed URL's signature may sit
    under any name), and whatever else :func:`redact` knows."""
    text = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@", r"\1***@", url)
    text = re.sub(r"([?&][^=&#]*=)[^&#]*", r"\1***", text)
    text = re.sub(r"#.+$", "#***", text)
    return redact(text)
