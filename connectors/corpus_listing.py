"""Which files make up a corpus: a sorted listing of a local folder, an S3/GCS prefix or a single
file, filtered by an optional glob, with each file's format decided before the first row is read.

Glob rules (matched against the path below the URI, '/'-separated):
  `*` and `?` never cross '/', `[abc]` is a character class, `**` crosses folders and `**/` may
  match no folder at all, so `**/*.parquet` also matches `a.parquet` at the top.
Files and folders whose name starts with '.' or '_' (`_SUCCESS`, `_temporary/`, `.crc`) and empty
files are skipped: writers such as Spark leave them next to the data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import pyarrow.fs as pafs

from qbatch.common.errors import SourceError
from qbatch.connectors.object_store import filesystem_for, split_uri, storage_error
from qbatch.connectors.source_config import SourceConfig

FileFormat = Literal["parquet", "jsonl", "csv"]

# Compression suffixes pyarrow's input streams decompress on the fly ("detect" mode), and their codecs.
_CODEC_BY_SUFFIX = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}
_COMPRESSED_SUFFIXES = tuple(_CODEC_BY_SUFFIX)
_FORMAT_BY_SUFFIX: dict[str, FileFormat] = {
    ".parquet": "parquet", ".pq": "parquet",
    ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
    ".csv": "csv",
}


@dataclass(frozen=True)
class CorpusFile:
    """One file to read. `path` is relative to the source URI (what the glob matched)."""

    uri: str
    path: str
    size: int
    format: FileFormat
    modified_ns: int | None = None  # last modification as the store reports it; part of a run's identity


def format_from_name(name: str) -> FileFormat | None:
    """The format a file name implies, or None; `.jsonl.gz`/`.csv.gz` count, `.parquet.gz` does not."""
    lowered = name.lower()
    compressed = lowered.endswith(_COMPRESSED_SUFFIXES)
    if compressed:
        lowered = lowered.rsplit(".", 1)[0]
    for suffix, fmt in _FORMAT_BY_SUFFIX.items():
        if lowered.endswith(suffix):
            # Parquet compresses its pages itself; a gzipped Parquet file cannot be read by row group.
            return None if compressed and fmt == "parquet" else fmt
    return None


def compression_from_name(name: str) -> str | None:
    """The pyarrow codec a file name implies (`gzip` for `.jsonl.gz`), or None for a plain file."""
    return next((codec for suffix, codec in _CODEC_BY_SUFFIX.items() if name.lower().endswith(suffix)), None)


@lru_cache(maxsize=64)
def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a '/'-aware glob (see the module docstring) into an anchored regex."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            close = pattern.find("]", i + 1)
            if close == -1:
                out.append(re.escape(c))
                i += 1
                continue
            body = pattern[i + 1:close]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = close + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def _is_skipped(relative: str) -> bool:
    return any(part.startswith((".", "_")) for part in relative.split("/"))


def _describe(source: SourceConfig) -> str:
    return source.uri + (f" (glob {source.glob!r})" if source.glob else "")


def _why_not_found(fs: pafs.FileSystem, base: str) -> str:
    if isinstance(fs, pafs.LocalFileSystem) or "/" not in base:
        return "no such file, folder or prefix"
    bucket = base.split("/", 1)[0]
    if fs.get_file_info(bucket).type == pafs.FileType.NotFound:
        return f"bucket {bucket!r} does not exist or these credentials cannot see it"
    return "no object under this prefix"


def _file_uri(source_uri: str, relative: str) -> str:
    return source_uri.rstrip("/") + "/" + relative


def list_corpus_files(source: SourceConfig) -> list[CorpusFile]:
    """Every data file of the source, sorted by URI; SourceError when none is found or the store refuses."""
    fs, base = filesystem_for(source.uri, source.storage)
    try:
        info = fs.get_file_info(base)
        if info.type == pafs.FileType.File:
            # A single named file: the user chose it, so neither glob nor skip rules apply.
            entries = [(split_uri(source.uri)[1].rsplit("/", 1)[-1], info.size, source.uri, info.mtime_ns)]
        elif info.type == pafs.FileType.Directory:
            selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
            entries = [
                (rel, fi.size, _file_uri(source.uri, rel), fi.mtime_ns)
                for fi in fs.get_file_info(selector)
                if fi.type == pafs.FileType.File
                for rel in [fi.path[len(base):].lstrip("/")]
                if not _is_skipped(rel)
            ]
        else:
            raise SourceError(f"nothing found at {_describe(source)}: {_why_not_found(fs, base)}")
    except SourceError:
        raise
    except (OSError, ValueError) as e:  # pyarrow raises OSError for S3/GCS failures
        raise storage_error("list", source.uri, e, source.storage) from None

    if source.glob and info.type == pafs.FileType.Directory:
        pattern = glob_to_regex(source.glob.lstrip("/"))
        entries = [e for e in entries if pattern.match(e[0])]

    files: list[CorpusFile] = []
    unknown: list[str] = []
    for rel, size, uri, modified_ns in entries:
        if not size:
            continue  # an empty file holds no records, and a 0-byte Parquet file cannot be opened
        fmt = source.format if source.format != "auto" else format_from_name(rel)
        if fmt is None:
            unknown.append(rel)
            continue
        files.append(CorpusFile(uri=uri, path=rel, size=int(size), format=fmt, modified_ns=modified_ns))

    if not files:
        extra = ""
        if unknown:
            extra = (f"; {len(unknown)} file(s) with no recognised extension, e.g. {unknown[0]!r} "
                     "(set source.format to read them)")
        raise SourceError(f"no data files found at {_describe(source)}{extra}")
    return sorted(files, key=lambda f: f.uri)
