"""One rule for every URL a user gives: parsed, never glued; secrets, queries and fragments kept out of bases."""

from __future__ import annotations

import pytest

from kappamask_core.foundation import InputError, checked_url, join_path


@pytest.mark.parametrize("url, expected", [
    ("HTTPS://TILES.EXAMPLE.ORG/", "https://tiles.example.org"),
    ("https://Example.org:8443/Some/Path/", "https://example.org:8443/Some/Path"),
    ("http://[::1]:8080/api", "http://[::1]:8080/api"),
])
def test_a_base_url_is_normalised_not_refused(url, expected):
    assert checked_url(url, "--x") == expected


@pytest.mark.parametrize("url, message", [
    ("https://h.example/?token=s3cret-value", "query string"),
    ("https://h.example/a?X-Amz-Signature=s3cret-value&X-Amz-Date=1", "query string"),
    ("https://h.example/a#s3cret-value", "fragment"),
    ("https://h.example/a#", "fragment"),
    ("https://s3cret-value@h.example/", "user or password"),
    ("https://u:s3cret-value@h.example/", "user or password"),
    ("https:///path", "names no host"),
    ("https://h.example/a b", "a space"),
    ("https://h.example/\tb", "'\\t'"),
    ("https://h.example/a\x7f", "'\\x7f'"),
    ("https://h.example/<b>", "cannot hold unquoted"),
    ("ftp://h.example/", "must be an http(s):// URL"),
    ("https://h.example:port/", "not a valid URL"),
    ("", "must be a URL"),
])
def test_a_url_that_would_break_or_leak_is_one_line_without_its_secret(url, message):
    with pytest.raises(InputError) as caught:
        checked_url(url, "--x")
    assert message in str(caught.value) and "s3cret-value" not in str(caught.value)


def test_credentials_are_kept_only_where_the_url_is_an_api_the_project_sends_them_to():
    assert checked_url("https://u:pw@API.example/stac/", "--api", credentials=True) == "https://u:pw@api.example/stac"
    with pytest.raises(InputError, match="query string"):
        checked_url("https://u:pw@api.example/?key=1", "--api", credentials=True)


def test_paths_are_joined_as_segments():
    assert join_path("https://h.example/base", "collections", "a b/c", "items", "x?y#z") == \
        "https://h.example/base/collections/a%20b%2Fc/items/x%3Fy%23z"
    assert join_path("https://h.example", *"algorithm_catalog/org/p.json".split("/")) == \
        "https://h.example/algorithm_catalog/org/p.json"
