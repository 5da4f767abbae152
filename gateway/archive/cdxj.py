"""The CDXJ cache of the archive index: one file's index kept as CDXJ text (spec §8).

Owns the CDXJ form of a ``FileIndex`` (``to_cdxj``, ``from_cdxj``) and the cache folder:
one ``.cdxj`` file per archive file, named by the archive's absolute path, size, inode
and modification time and by the map's settings that shape a key (case rule, ignored
query names, served hosts), so an index is reused while the file is unchanged and
rebuilt when it changes. Kept in a private folder of the service user (by default
``archive-index/`` in the gateway's state directory, beside the last-known-good
copies), written atomically, so that every worker of a machine shares one build and a
file planted by another user is never read. Building and merging indexes is
``gateway.archive.index``'s. Pure: no Flask.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import tempfile

from gateway.archive.reader import Record, parse_date
from gateway.archive.values import FileIndex, KeySettings

log = logging.getLogger("gateway.archive")

CDXJ_VERSION = 1


def default_index_dir() -> str:
    """Return the index cache folder: ``archive-index`` in GATEWAY_STATE_DIR or the temp default."""
    state = os.environ.get("GATEWAY_STATE_DIR", "")
    if not state or state.lower() == "off":
        state = os.path.join(tempfile.gettempdir(), f"legacy-gateway-{os.geteuid()}")
    return os.path.join(state, "archive-index")


def cache_path(cache_dir: str, path: str, st: os.stat_result, settings: KeySettings) -> str | None:
    """Return the cache file of one archive file's current state, or None when no cache is safe."""
    try:
        _private_dir(cache_dir)
    except OSError as exc:
        log.warning("archive index cache %s not used: %s", cache_dir, exc)
        return None
    absolute = os.path.abspath(path)
    name = hashlib.sha256(absolute.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    state = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{settings.fingerprint}:{CDXJ_VERSION}"
    digest = hashlib.sha256(state.encode()).hexdigest()[:16]
    return os.path.join(cache_dir, f"{name}-{digest}.cdxj")


def _private_dir(path: str) -> None:
    """Create `path` private to this user if missing; refuse one others could write to."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise PermissionError(f"{path} is not a directory only this user can write to")


def to_cdxj(index: FileIndex) -> str:
    """Return a file's index as CDXJ text: a ``!meta`` line, then ``urlkey timestamp {json}``."""
    lines = ["!meta " + json.dumps({"version": CDXJ_VERSION, "skipped": index.skipped})]
    for key, r in index.records:
        when = parse_date(r.date)
        stamp = when.strftime("%Y%m%d%H%M%S") if when else "0"
        fields = {
            "url": r.url,
            "date": r.date,
            "type": r.kind,
            "status": r.status,
            "mime": r.mime,
            "offset": r.offset,
            "length": r.length,
            "plen": r.payload_length,
        }
        fields.update(
            {
                k: v
                for k, v in (
                    ("location", r.location),
                    ("digest", r.digest),
                    ("refers_url", r.refers_url),
                    ("refers_date", r.refers_date),
                )
                if v
            }
        )
        lines.append(f"{key} {stamp} {json.dumps(fields, ensure_ascii=False)}")
    return "\n".join(lines) + "\n"


def from_cdxj(text: str, shown: str) -> FileIndex:
    """Read CDXJ text written by ``to_cdxj``; raise ValueError when it is not that."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("!meta "):
        raise ValueError("no !meta line")
    meta = json.loads(lines[0][6:])
    if meta.get("version") != CDXJ_VERSION:
        raise ValueError("another version")
    keys = []
    data = []
    for line in lines[1:]:
        key, _, rest = line.partition(" ")
        keys.append(key)
        data.append(rest.partition(" ")[2])
    # One JSON text for the whole file: a worker's start reads 100,000 lines of it.
    parsed = json.loads("[" + ",".join(data) + "]")
    if len(parsed) != len(keys) or not all(type(f) is dict for f in parsed):
        raise ValueError("a line that is not one JSON object")
    records = [
        (
            key,
            Record(
                f["type"],
                f["url"],
                f["date"],
                f["offset"],
                f["length"],
                f["status"],
                f["mime"],
                f.get("location", ""),
                f.get("digest", ""),
                f["plen"],
                f.get("refers_url", ""),
                f.get("refers_date", ""),
            ),
        )
        for key, f in zip(keys, parsed, strict=True)
    ]
    return FileIndex(shown, tuple(records), {str(k): int(v) for k, v in meta["skipped"].items()})


def read_cache(cache: str, shown: str) -> FileIndex | None:
    try:
        with open(cache, encoding="utf-8") as f:
            return from_cdxj(f.read(), shown)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("the cached index %s is unreadable (%s); rebuilding it", cache, exc)
        return None


def write_cache(cache: str, index: FileIndex) -> None:
    """Write the cache file atomically and drop the older indexes of the same archive file."""
    folder, name = os.path.split(cache)
    prefix = name.partition("-")[0] + "-"
    try:
        fd, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".cdxj", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(to_cdxj(index))
            os.replace(temporary, cache)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        for entry in os.scandir(folder):
            if entry.name.startswith(prefix) and entry.name != name:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
    except OSError as exc:
        log.warning("could not keep the index of %s in %s: %s", index.file, folder, exc)
