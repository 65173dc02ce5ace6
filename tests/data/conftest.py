"""Fixtures for the data tests: a loopback HTTP file server and a tiny fake EuroSAT-MS."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rsdino.data.extract import extract_archive
from rsdino.data.fake.eurosat import BANDS, ROOT, make_fake_eurosat_ms
from rsdino.data.prepare import prepare_scene_dataset

FAKE_N_PER_CLASS = 5
FAKE_SIZE = 16


@dataclass
class ServerState:
    """What the loopback server serves and how it misbehaves; ``requests`` records every GET."""

    files: dict[str, bytes] = field(default_factory=dict)
    cut_after: int | None = None  # send only this many body bytes of the next response, then hang up
    ignore_range: bool = False  # answer 200 with the whole file even to a Range request
    fail_status: int | None = None  # answer every GET with this status (e.g. 503), no body
    extra_length: int = 0  # announce this many bytes more in Content-Length than the body holds
    requests: list[dict[str, str | None]] = field(default_factory=list)


class LoopbackServer:
    """A running ``ThreadingHTTPServer`` on 127.0.0.1 and the state its handler reads."""

    def __init__(self) -> None:
        self.state = ServerState()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self.state))
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def url(self, name: str) -> str:
        """URL of the served file ``name``."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/{name}"


def _make_handler(state: ServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (the http.server naming)
            range_header = self.headers.get("Range")
            state.requests.append({"path": self.path, "range": range_header})
            data = state.files.get(self.path.lstrip("/"))
            if state.fail_status is not None:
                self.send_error(state.fail_status)
                return
            if data is None:
                self.send_error(404)
                return
            start = 0
            if range_header and not state.ignore_range:
                start = int(range_header.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body) + state.extra_length))
            if state.extra_length:
                self.close_connection = True
            if state.cut_after is not None:
                body, state.cut_after = body[: state.cut_after], None
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

    return Handler


@pytest.fixture
def http_server() -> Iterator[LoopbackServer]:
    """A loopback file server supporting ``Range``; configure it through ``server.state``."""
    server = LoopbackServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture(scope="session")
def fake_eurosat_tar(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A tiny fake EuroSAT-MS archive and its sha256."""
    archive = tmp_path_factory.mktemp("fake_archive") / "EuroSATallBands.tar"
    sha256 = make_fake_eurosat_ms(archive, n_per_class=FAKE_N_PER_CLASS, size=FAKE_SIZE, seed=0)
    return archive, sha256


@pytest.fixture(scope="session")
def fake_eurosat_raw(fake_eurosat_tar: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake EuroSAT-MS archive, extracted."""
    return extract_archive(fake_eurosat_tar[0], tmp_path_factory.mktemp("raw") / "eurosat")


def _prepare_fake(raw_dir: Path, out_dir: Path, **overrides: object) -> dict:
    settings = {"name": "fake_eurosat", "class_root": ROOT, "extensions": (".tif",), "bands": BANDS,
                "rgb_bands": ["B04", "B03", "B02"], "gsd": 10.0, "native_size": FAKE_SIZE,
                "test_fraction": 0.2, "seed": 0, "progress": False}
    return prepare_scene_dataset(raw_dir, out_dir, **(settings | overrides))


@pytest.fixture(scope="session")
def prepare_fake() -> Callable[..., dict]:
    """``prepare_fake(raw_dir, out_dir, **overrides)``: prepare with the real EuroSAT-MS settings."""
    return _prepare_fake


@pytest.fixture(scope="session")
def fake_eurosat_prepared(fake_eurosat_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake EuroSAT-MS, prepared."""
    out_dir = tmp_path_factory.mktemp("prepared") / "eurosat"
    _prepare_fake(fake_eurosat_raw, out_dir)
    return out_dir
