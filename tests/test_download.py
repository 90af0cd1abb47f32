"""dogbreed.data.download against a real HTTP server on 127.0.0.1 (no internet needed)."""

from __future__ import annotations

import hashlib
import io
import runpy
import socket
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dogbreed.data.download import DownloadError, download_dataset, main

SPLIT_FILES = {
    "train/001.Affenpinscher/Affenpinscher_00001.jpg": b"train-1" * 50,
    "train/002.Afghan_hound/Afghan_hound_00002.jpg": b"train-2" * 50,
    "valid/001.Affenpinscher/Affenpinscher_00003.jpg": b"valid-1" * 50,
    "test/002.Afghan_hound/Afghan_hound_00004.jpg": b"test-1" * 50,
}


def make_zip(files: dict[str, bytes], prefix: str = "dogImages/") -> bytes:
    buf = io.BytesIO()
    # ZIP_STORED keeps the archive larger than its contents, so a cut mid-transfer is a real truncation.
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(prefix + name, data)
    return buf.getvalue()


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    honour_range: bool = True
    cut_after: int | None = None  # send this many body bytes, then drop the connection (once)
    stall_after: int | None = None  # send this many body bytes, then hang until teardown (once)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    release: threading.Event = field(default_factory=threading.Event)
    base_url: str = ""

    def url(self, path: str = "/dogImages.zip") -> str:
        return self.base_url + path


class Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output quiet
        pass

    def do_GET(self) -> None:
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        range_header = self.headers.get("Range")
        state.requests.append((self.path, range_header))
        body = state.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if range_header and state.honour_range:
            start = int(range_header.removeprefix("bytes=").rstrip("-"))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if state.cut_after is not None:
            self.wfile.write(payload[: state.cut_after])
            state.cut_after = None
            self.close_connection = True
            return
        if state.stall_after is not None:
            self.wfile.write(payload[: state.stall_after])
            self.wfile.flush()
            state.stall_after = None
            state.release.wait(10)  # the client's read timeout fires long before this
            self.close_connection = True
            return
        self.wfile.write(payload)


@pytest.fixture
def server() -> Iterator[ServerState]:
    state = ServerState()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.state = state  # type: ignore[attr-defined]
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    # A short poll interval: shutdown() waits up to one interval, 0.5 s by default, per test.
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def assert_dataset(folder: Path) -> None:
    for name, data in SPLIT_FILES.items():
        assert (folder / name).read_bytes() == data


def test_download_and_extract_leaves_only_the_dataset(server: ServerState, tmp_path: Path) -> None:
    server.files["/dogImages.zip"] = make_zip(SPLIT_FILES)
    out = download_dataset(tmp_path / "data", server.url(), progress=True)
    assert out == tmp_path / "data" / "dogImages"
    assert_dataset(out)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["dogImages"]  # no .part/.zip/temp dirs
    assert server.requests == [("/dogImages.zip", None)]


def test_zip_with_splits_at_its_root_and_keep_zip(server: ServerState, tmp_path: Path) -> None:
    body = make_zip(SPLIT_FILES, prefix="")
    server.files["/flat.zip"] = body
    out = download_dataset(tmp_path, server.url("/flat.zip"), progress=False, keep_zip=True)
    assert_dataset(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dogImages", "dogImages.zip"]
    assert (tmp_path / "dogImages.zip").read_bytes() == body


def test_present_dataset_makes_no_request(server: ServerState, tmp_path: Path) -> None:
    for split in ("train", "valid", "test"):
        (tmp_path / "dogImages" / split).mkdir(parents=True)
    assert download_dataset(tmp_path, server.url(), progress=False) == tmp_path / "dogImages"
    assert server.requests == []


def test_kept_zip_is_reused_without_a_request(server: ServerState, tmp_path: Path) -> None:
    (tmp_path / "dogImages.zip").write_bytes(make_zip(SPLIT_FILES))
    assert_dataset(download_dataset(tmp_path, server.url(), progress=False))
    assert server.requests == []


def test_interrupted_download_resumes_with_range(server: ServerState, tmp_path: Path) -> None:
    body = make_zip(SPLIT_FILES)
    server.files["/dogImages.zip"] = body
    server.cut_after = 300
    with pytest.raises(DownloadError) as info:
        download_dataset(tmp_path, server.url(), progress=False)
    part = tmp_path / "dogImages.zip.part"
    assert server.url() in str(info.value) and str(part) in str(info.value)
    assert "data.root=" in str(info.value)
    assert part.read_bytes() == body[:300]

    assert_dataset(download_dataset(tmp_path, server.url(), progress=False))
    assert server.requests[-1] == ("/dogImages.zip", "bytes=300-")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dogImages"]


def test_server_ignoring_range_restarts_cleanly(server: ServerState, tmp_path: Path) -> None:
    body = make_zip(SPLIT_FILES)
    server.files["/dogImages.zip"] = body
    server.honour_range = False
    (tmp_path / "dogImages.zip.part").write_bytes(b"garbage that must not stay in front")
    assert_dataset(download_dataset(tmp_path, server.url(), progress=False))
    assert server.requests == [("/dogImages.zip", "bytes=35-")]  # asked to resume, got 200, started over
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dogImages"]


def test_complete_part_answered_with_416_is_verified(server: ServerState, tmp_path: Path) -> None:
    body = make_zip(SPLIT_FILES)
    server.files["/dogImages.zip"] = body
    (tmp_path / "dogImages.zip.part").write_bytes(body)
    assert_dataset(download_dataset(tmp_path, server.url(), progress=False))
    assert server.requests == [("/dogImages.zip", f"bytes={len(body)}-")]


def test_stalled_transfer_times_out_and_keeps_part(server: ServerState, tmp_path: Path) -> None:
    server.files["/dogImages.zip"] = make_zip(SPLIT_FILES)
    server.stall_after = 100
    with pytest.raises(DownloadError, match="could not fetch") as info:
        download_dataset(tmp_path, server.url(), progress=False, timeout=0.3)
    assert "dogImages.zip.part" in str(info.value)
    assert (tmp_path / "dogImages.zip.part").stat().st_size == 100


def test_sha256_checked(server: ServerState, tmp_path: Path) -> None:
    body = make_zip(SPLIT_FILES)
    server.files["/dogImages.zip"] = body
    wrong = "0" * 64
    with pytest.raises(DownloadError) as info:
        download_dataset(tmp_path, server.url(), sha256=wrong, progress=False)
    actual = hashlib.sha256(body).hexdigest()
    assert wrong in str(info.value) and actual in str(info.value)
    assert list(tmp_path.iterdir()) == []  # bad zip deleted, nothing extracted

    assert_dataset(download_dataset(tmp_path, server.url(), sha256=actual.upper(), progress=False))


def test_non_zip_body_is_rejected_and_deleted(server: ServerState, tmp_path: Path) -> None:
    server.files["/dogImages.zip"] = b"<html>Access Denied</html>"
    with pytest.raises(DownloadError, match="not a zip") as info:
        download_dataset(tmp_path, server.url(), progress=False)
    assert str(tmp_path / "dogImages.zip") in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_member_is_rejected(server: ServerState, tmp_path: Path) -> None:
    body = bytearray(make_zip(SPLIT_FILES))
    offset = body.index(b"train-1")  # flip a byte inside a stored member: its CRC no longer matches
    body[offset] ^= 0xFF
    server.files["/dogImages.zip"] = bytes(body)
    with pytest.raises(DownloadError, match="CRC") as info:
        download_dataset(tmp_path, server.url(), progress=False)
    assert str(tmp_path / "dogImages.zip") in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_missing_split_is_named(server: ServerState, tmp_path: Path) -> None:
    files = {k: v for k, v in SPLIT_FILES.items() if not k.startswith("test/")}
    server.files["/dogImages.zip"] = make_zip(files)
    with pytest.raises(DownloadError, match=r"lacks the split folder\(s\) test/$") as info:
        download_dataset(tmp_path, server.url(), progress=False)
    assert str(tmp_path / "dogImages.zip") in str(info.value)
    assert list(tmp_path.iterdir()) == []  # temp extraction dir and the unusable zip are gone


@pytest.mark.parametrize("evil", ["../evil.txt", "dogImages/../../evil.txt", "/tmp/evil.txt"])
def test_zip_slip_member_is_rejected(server: ServerState, tmp_path: Path, evil: str) -> None:
    buf = io.BytesIO(make_zip(SPLIT_FILES))
    with zipfile.ZipFile(buf, "a") as zf:
        info = zipfile.ZipInfo(evil)  # ZipInfo keeps the name as given, unlike writestr's path handling
        zf.writestr(info, b"pwned")
    server.files["/dogImages.zip"] = buf.getvalue()
    root = tmp_path / "root"
    with pytest.raises(DownloadError, match="unsafe member"):
        download_dataset(root, server.url(), progress=False)
    assert list(root.iterdir()) == []
    assert not (tmp_path / "evil.txt").exists()


def test_http_error_names_the_url(server: ServerState, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="404") as info:
        download_dataset(tmp_path, server.url("/missing.zip"), progress=False)
    assert server.url("/missing.zip") in str(info.value)


def test_connection_refused_names_the_url(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound but not listening: connections to it are refused
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/dogImages.zip"
        with pytest.raises(DownloadError, match="could not fetch") as info:
            download_dataset(tmp_path, url, progress=False, timeout=5)
    assert url in str(info.value)


def test_non_empty_foreign_folder_is_left_alone(server: ServerState, tmp_path: Path) -> None:
    (tmp_path / "dogImages").mkdir()
    (tmp_path / "dogImages" / "notes.txt").write_text("mine")
    with pytest.raises(DownloadError, match="lacks"):
        download_dataset(tmp_path, server.url(), progress=False)
    assert server.requests == []
    assert (tmp_path / "dogImages" / "notes.txt").read_text() == "mine"


def test_cli(server: ServerState, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server.files["/dogImages.zip"] = make_zip(SPLIT_FILES)
    assert main(["download", "--root", str(tmp_path), "--url", server.url(), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "dogImages")
    assert_dataset(tmp_path / "dogImages")

    bad = tmp_path / "other"
    assert main(["download", "--root", str(bad), "--url", server.url("/nope.zip"), "--no-progress"]) == 1
    assert server.url("/nope.zip") in capsys.readouterr().err


def test_python_dash_m(
    server: ServerState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server.files["/dogImages.zip"] = make_zip(SPLIT_FILES)
    argv = ["dogbreed.data", "download", "--root", str(tmp_path), "--url", server.url(), "--no-progress"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as info:
        runpy.run_module("dogbreed.data", run_name="__main__")
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "dogImages")


def test_training_config_download_true_fetches_then_trains_on_it(server: ServerState, tmp_path: Path) -> None:
    # A real (tiny) image data set zipped and served; data.download=true in the composed config fetches it.
    from hydra.utils import instantiate

    from dogbreed.data.embedded import generate_dataset
    from tests.conftest import compose_config

    source = generate_dataset(
        tmp_path / "src", num_classes=2, images_per_class={"train": 2, "valid": 1, "test": 1}, image_size=32
    )
    files = {str(p.relative_to(source)): p.read_bytes() for p in source.rglob("*.jpg")}
    server.files["/dogImages.zip"] = make_zip(files)
    root = tmp_path / "data" / "dogImages"
    cfg = compose_config(
        tmp_path / "run",
        ["data.download=true", f"data.url={server.url()}", f"data.root={root}", "model=resnet18"],
    )
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert datamodule.class_names == sorted(p.name for p in (source / "train").iterdir())
    assert len(datamodule.datasets["train"]) == 4
