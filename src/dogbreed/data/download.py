"""Fetch the Udacity dog-breed images: resumable download, verification, atomic extraction.

`python -m dogbreed.data download --root DIR` leaves DIR/dogImages/{train,valid,test}/.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from dogbreed.config.errors import UserError
from dogbreed.data.layout import SPLITS

DOG_IMAGES_URL = "https://s3-us-west-1.amazonaws.com/udacity-aind/dog-project/dogImages.zip"
_SPLITS_TEXT = "train/ valid/ test/"
_CHUNK = 1 << 20


class DownloadError(UserError, RuntimeError):
    """The data set could not be fetched, verified or unpacked; the message names the URL or file at fault."""


def _has_splits(folder: Path) -> bool:
    return all((folder / split).is_dir() for split in SPLITS)


def download_dataset(
    dest_root: str | Path,
    url: str = DOG_IMAGES_URL,
    *,
    sha256: str | None = None,
    name: str = "dogImages",
    progress: bool = True,
    timeout: float = 60.0,
    keep_zip: bool = False,
) -> Path:
    """Fetch the zip at `url`, verify it and extract it atomically.

    Returns dest_root/name, the folder holding train/ valid/ test/. Raises DownloadError.
    """
    root = Path(dest_root).expanduser()
    target = root / name
    if _has_splits(target):
        return target  # already there: no network needed
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        # Never delete data we did not create; the final rename would fail on it anyway.
        raise DownloadError(f"{target} exists but lacks {_SPLITS_TEXT} folders; move it away and re-run")
    root.mkdir(parents=True, exist_ok=True)
    zip_path = root / f"{name}.zip"
    if not zip_path.exists():  # a zip kept from an earlier run (keep_zip=True) is reused
        _fetch(url, zip_path, progress=progress, timeout=timeout)
    _verify(zip_path, sha256)
    try:
        _extract(zip_path, target)
    except DownloadError:
        zip_path.unlink()  # unusable: a re-run, perhaps with another url, must not pick it up again
        raise
    if not keep_zip:
        zip_path.unlink()  # ~1 GB that is of no further use once unpacked
    return target


def _network_error(url: str, part: Path, reason: object) -> DownloadError:
    kept = f"; the partial download was kept at {part} and a re-run resumes it" if part.exists() else ""
    return DownloadError(
        f"could not fetch {url}: {reason}{kept}. Alternatively download {url} by hand, unzip it "
        f"and pass data.root=<the folder holding {_SPLITS_TEXT}>"
    )


def _fetch(url: str, zip_path: Path, *, progress: bool, timeout: float) -> None:
    """Stream `url` into <zip>.part, resuming a previous partial download, then rename it to `zip_path`."""
    part = zip_path.with_name(zip_path.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "dogbreed-download"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # nothing past our offset: the part already holds the whole file
                exc.close()
                os.replace(part, zip_path)
                return
            raise
        with response:
            if response.status == 206:
                # Appending bytes from any other offset would silently corrupt the file.
                content_range = response.headers.get("Content-Range", "")
                if not content_range.startswith(f"bytes {have}-"):
                    part.unlink()
                    raise _network_error(url, part, f"asked for bytes {have}- but got {content_range!r}")
                mode = "ab"
            else:
                mode, have = "wb", 0  # the server ignored Range and sends the whole file: start over
            length = response.headers.get("Content-Length")
            total = have + int(length) if length else None
            with (
                open(part, mode) as out,
                tqdm(
                    total=total,
                    initial=have,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=zip_path.name,
                    disable=not progress,
                ) as bar,
            ):
                # read1 returns whatever has arrived, so bytes received before a stall are kept.
                while chunk := response.read1(_CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
        # http.client returns b"" rather than raising when the peer closes early, so count the bytes.
        if total is not None and part.stat().st_size < total:
            raise _network_error(url, part, f"connection closed after {part.stat().st_size} of {total} bytes")
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
        reason = exc if isinstance(exc, urllib.error.HTTPError) else getattr(exc, "reason", exc)
        raise _network_error(url, part, reason) from exc
    os.replace(part, zip_path)


def _verify(zip_path: Path, sha256: str | None) -> None:
    """Check the digest (if known) and every member's CRC; delete a bad zip so a re-run downloads afresh."""
    if sha256:
        digest = hashlib.sha256()
        with open(zip_path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        actual, expected = digest.hexdigest(), sha256.strip().lower()
        if actual != expected:
            zip_path.unlink()
            raise DownloadError(
                f"{zip_path} has sha256 {actual}, expected {expected}; deleted it, re-run to retry"
            )
    try:
        with zipfile.ZipFile(zip_path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, EOFError) as exc:
        zip_path.unlink()
        raise DownloadError(f"{zip_path} is not a zip archive ({exc}); deleted it, re-run to retry") from exc
    if bad is not None:
        zip_path.unlink()
        raise DownloadError(f"{zip_path} is corrupt (member {bad!r} fails its CRC check); deleted it")


def _extract(zip_path: Path, target: Path) -> None:
    """Unpack into a temp dir beside `target`, then rename: `target` never holds half an archive."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.extract-", dir=target.parent))
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for member in zf.namelist():
                parts = PurePosixPath(member.replace("\\", "/")).parts
                if member.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                    raise DownloadError(f"{zip_path} holds unsafe member path {member!r}; not extracting it")
            zf.extractall(tmp)
        # The real archive has one top-level dogImages/ folder; also accept splits at the archive root.
        candidates = [tmp, *sorted(p for p in tmp.iterdir() if p.is_dir())]
        found = next((c for c in candidates if _has_splits(c)), None)
        if found is None:
            best = max(candidates, key=lambda c: sum((c / s).is_dir() for s in SPLITS))
            missing = [f"{s}/" for s in SPLITS if not (best / s).is_dir()]
            raise DownloadError(f"{zip_path} lacks the split folder(s) {', '.join(missing)}")
        if target.exists():
            target.rmdir()  # an empty leftover (download_dataset refuses non-empty ones)
        os.replace(found, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """`python -m dogbreed.data download --root DIR [--url URL] [--sha256 HEX] [--no-progress]`."""
    parser = argparse.ArgumentParser(prog="python -m dogbreed.data", description="Dog-breed data set tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    dl = commands.add_parser("download", help="download and unpack dogImages.zip")
    dl.add_argument("--root", required=True, type=Path, help="folder to unpack into (gets ROOT/dogImages/)")
    dl.add_argument("--url", default=DOG_IMAGES_URL, help="zip to fetch (default: the Udacity S3 copy)")
    dl.add_argument("--sha256", help="expected sha256 of the zip, checked when given")
    dl.add_argument("--keep-zip", action="store_true", help="keep the zip after unpacking it")
    dl.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        path = download_dataset(
            args.root, args.url, sha256=args.sha256, progress=not args.no_progress, keep_zip=args.keep_zip
        )
    except DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0
