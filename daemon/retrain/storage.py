"""Artifact and data storage addressed by URI: a local directory by default, anything fsspec writes.

The model registry and every job speak URIs (`file:///var/lib/sigd/models/m/v1`,
`s3://bucket/sigd/runs/...`), never a machine's paths, so a job can run on another node.
`file://` is handled here with copy-beside-then-rename (atomic); other schemes go through
fsspec (`s3://` needs s3fs, `gs://` gcsfs, ...; `memory://` is built in). For a runner whose
workers cannot see the submitting machine's disk, a directory also travels as bytes
(`pack` / `unpack`: an uncompressed tar in memory, fine for tapes and artifacts of a few MB).
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse


def to_uri(location: str | os.PathLike[str]) -> str:
    """A URI for a path or URI: plain paths become absolute `file://` URIs; URIs pass unchanged."""
    text = os.fspath(location)
    if "://" in text:
        return text
    return Path(text).expanduser().resolve().as_uri()


def local_path(uri: str) -> Path | None:
    """The local path of a `file://` URI (or a legacy plain path); None for other schemes."""
    if "://" not in uri:
        return Path(uri)
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


def join(base: str, *parts: str) -> str:
    """`base/part/...` for a URI."""
    return "/".join([to_uri(base).rstrip("/"), *(p.strip("/") for p in parts)])


def is_local(uri: str) -> bool:
    """True for `file://` URIs and plain paths: workers on other machines cannot read them."""
    return local_path(uri) is not None


def _fs(uri: str) -> tuple[object, str]:
    from fsspec.core import url_to_fs

    return url_to_fs(uri)


def put_dir(src: Path, uri: str) -> str:
    """Copy directory `src` to `uri` (replacing what is there); the URI."""
    path = local_path(uri)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        shutil.rmtree(tmp)
        shutil.copytree(src, tmp)
        old = path.parent / f".{path.name}.old-{os.getpid()}"
        if path.exists():
            os.rename(path, old)
        os.rename(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
        return to_uri(path)
    fs, root = _fs(uri)
    if fs.exists(root):  # type: ignore[attr-defined]
        fs.rm(root, recursive=True)  # type: ignore[attr-defined]
    fs.put(str(src).rstrip("/") + "/", root, recursive=True)  # type: ignore[attr-defined]
    return uri


@contextmanager
def fetched(uri: str) -> Iterator[Path]:
    """A local directory with the content at `uri`: the directory itself for `file://`, else a
    temporary copy removed on exit."""
    path = local_path(uri)
    if path is not None:
        if not path.is_dir():
            raise FileNotFoundError(f"{uri}: no such directory in storage")
        yield path
        return
    fs, root = _fs(uri)
    if not fs.exists(root):  # type: ignore[attr-defined]
        raise FileNotFoundError(f"{uri}: no such directory in storage")
    with tempfile.TemporaryDirectory(prefix="sigd-fetch-") as tmp:
        fs.get(root.rstrip("/") + "/", tmp + "/", recursive=True)  # type: ignore[attr-defined]
        yield Path(tmp)


def pack(src: Path) -> bytes:
    """A directory (flat or nested) as tar bytes."""
    if not src.is_dir():
        raise FileNotFoundError(f"{to_uri(src)}: no such directory in storage")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for f in sorted(src.rglob("*")):
            if f.is_file():
                tar.add(f, arcname=f.relative_to(src).as_posix())
    return buf.getvalue()


def unpack(data: bytes, dest: Path) -> Path:
    """Tar bytes from `pack` into `dest` (created); members may not leave it."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        tar.extractall(dest, filter="data")
    return dest
