"""Fetching a named dataset, against a local HTTP server on 127.0.0.1 only."""

from __future__ import annotations

import hashlib
import http.server
import threading
from functools import partial

import pytest

from corredit.data import SOURCES, DataSource, FetchError, fetch_dataset, load_dataset
from corredit.registry import Registry

PAYLOAD = b'{"subject": "A", "relation": "r", "target_new": "x"}\n'


@pytest.fixture()
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "facts.jsonl").write_bytes(PAYLOAD)
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    finally:
        httpd.shutdown()
        httpd.server_close()


def registry_with(name, url, payload=PAYLOAD, **kw):
    reg: Registry[DataSource] = Registry("data source")
    reg.add(name, DataSource(name, url, hashlib.sha256(payload).hexdigest(), len(payload), **kw))
    return reg


def test_fetch_downloads_once_and_verifies(server, tmp_path):
    base, hits = server
    reg = registry_with("facts", f"{base}/facts.jsonl")
    cache = tmp_path / "cache"
    path = fetch_dataset("facts", sources=reg, cache_dir=cache)
    assert path == cache / "facts" / "facts.jsonl" and path.read_bytes() == PAYLOAD
    assert hits == ["/facts.jsonl"]
    assert fetch_dataset("facts", sources=reg, cache_dir=cache) == path
    assert hits == ["/facts.jsonl"]            # second call: from the cache
    assert load_dataset(path).requests[0].subject == "A"
    path.write_bytes(b"tampered\n")             # a cached file that no longer matches
    assert fetch_dataset("facts", sources=reg, cache_dir=cache).read_bytes() == PAYLOAD
    assert len(hits) == 2
    assert sorted(p.name for p in path.parent.iterdir()) == ["facts.jsonl"]


def test_fetch_refuses_a_wrong_hash_or_size(server, tmp_path):
    base, _ = server
    reg: Registry[DataSource] = Registry("data source")
    reg.add("bad-hash", DataSource("bad-hash", f"{base}/facts.jsonl", "0" * 64, len(PAYLOAD)))
    reg.add("bad-size", DataSource("bad-size", f"{base}/facts.jsonl",
                                   hashlib.sha256(PAYLOAD).hexdigest(), len(PAYLOAD) - 5))
    cache = tmp_path / "cache"
    with pytest.raises(FetchError, match="SHA-256"):
        fetch_dataset("bad-hash", sources=reg, cache_dir=cache)
    with pytest.raises(FetchError, match="larger than"):
        fetch_dataset("bad-size", sources=reg, cache_dir=cache)
    assert not any(p.is_file() for p in cache.rglob("*"))   # nothing half-written kept


def test_fetch_errors_name_the_source(server, tmp_path):
    base, _ = server
    reg = registry_with("gone", f"{base}/missing.json")
    with pytest.raises(FetchError, match="could not download"):
        fetch_dataset("gone", sources=reg, cache_dir=tmp_path)
    with pytest.raises(KeyError, match="unknown data source 'nope'"):
        fetch_dataset("nope", sources=reg, cache_dir=tmp_path)
    with pytest.raises(FetchError, match="http"):
        fetch_dataset(DataSource("f", "file:///etc/passwd", "0" * 64, 1), cache_dir=tmp_path)


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path, server):
    from corredit.data.fetch import default_cache_dir
    monkeypatch.setenv("CORREDIT_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" / "data"
    base, _ = server
    path = fetch_dataset(DataSource("facts", f"{base}/facts.jsonl",
                                    hashlib.sha256(PAYLOAD).hexdigest(), len(PAYLOAD)))
    assert path == tmp_path / "c" / "data" / "facts" / "facts.jsonl"


def test_builtin_sources_are_pinned(shared_data):
    from corredit.data.fetch import verify_file
    assert "known-1000" in SOURCES and "mquake-hard" in SOURCES
    for name in SOURCES.names():
        src = SOURCES.get(name)
        assert len(src.sha256) == 64 and src.size > 0
        assert src.url.startswith("https://raw.githubusercontent.com/")
    # the shared copies are byte for byte the pinned files
    assert verify_file(shared_data / "rome_knowns" / "known_1000.json", SOURCES.get("known-1000")) is None
    assert verify_file(shared_data / "counterfact" / "counterfact-val.json",
                       SOURCES.get("counterfact-val")) is None
