"""Map files as text and YAML as line-numbered values (``YMap``, ``YList``), or problems.

YAML is read event by event (with the C parser when present) so that line numbers,
duplicate keys, anchors, aliases, tags and nesting depth are all under our control:
an alias bomb is refused before anything is built. Pure: no Flask.
"""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from gateway.mapfile.values import MAX_PROBLEMS, Problem

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 16
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YMap(dict[str, Any]):
    """A YAML mapping that remembers its line and the line of each key."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[str, int] = {}


class YList(list[Any]):
    """A YAML sequence that remembers its line and the line of each item."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.lines: list[int] = []


_resolver: Any = yaml.resolver.Resolver()
_constructor = yaml.constructor.SafeConstructor()
_NO_KEY = object()


@functools.lru_cache(maxsize=4096)
def _plain_tag(value: str) -> str:
    """Return the tag YAML gives a plain scalar: it depends on the text alone."""
    # Cached: a 100k-rule map repeats "from", "to", "status", 301 in every rule, and the
    # resolver tries its regexes in Python each time.
    tag: str = _resolver.resolve(yaml.ScalarNode, value, (True, False))
    return tag


def _scalar(event: Any) -> Any:
    if not event.implicit[0]:  # quoted: always text
        return event.value
    tag = _plain_tag(event.value)
    if tag == "tag:yaml.org,2002:str":
        return event.value
    try:
        return _constructor.yaml_constructors[tag](_constructor, yaml.ScalarNode(tag, event.value))
    except Exception:
        return event.value


def read_yaml(text: str, file: str) -> Any:
    """Compose one YAML document into YMap/YList/scalars, refusing anchors, aliases and tags."""
    problems: list[Problem] = []
    stack: list[list[Any]] = []  # [container, pending key, line of that key]
    root: Any = _NO_KEY
    documents = 0

    def add(value: Any, line: int) -> None:
        nonlocal root
        if not stack:
            root = value
            return
        frame = stack[-1]
        container = frame[0]
        if isinstance(container, YList):
            container.append(value)
            container.lines.append(line)
        elif frame[1] is _NO_KEY:
            if not isinstance(value, str):
                problems.append(Problem(file, line, f"a key must be text, not {value!r}"))
                value = repr(value)
            frame[1] = value
            frame[2] = line
        else:
            # A key's line, not its value's: a block value starts on the line after the key.
            key, key_line = frame[1], frame[2]
            frame[1] = _NO_KEY
            if key in container:
                first = container.key_lines[key]
                problems.append(
                    Problem(file, key_line, f"duplicate key {key!r} (first at line {first})")
                )
            else:
                container[key] = value
                container.key_lines[key] = key_line

    try:
        for event in yaml.parse(text, Loader=_Loader):
            line = event.start_mark.line + 1 if event.start_mark else 0
            if len(problems) >= MAX_PROBLEMS:
                # 10 MB of "a: " lines would otherwise be 2.6 million problems (and 1 GB).
                raise _Refused(line, f"too many problems: stopped reading after {MAX_PROBLEMS}")
            if type(event) is yaml.ScalarEvent and event.anchor is None and event.tag is None:
                add(_scalar(event), line)  # the most common event, without the checks below
                continue
            if isinstance(event, yaml.AliasEvent):
                raise _Refused(line, "YAML aliases (*name) are not allowed")
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise _Refused(line, "only one YAML document is allowed (found '---')")
                continue
            if not isinstance(
                event, (yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent)
            ):
                if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                    container = stack.pop()[0]
                    add(container, container.line)
                continue
            if event.anchor is not None:
                raise _Refused(line, f"YAML anchors (&{event.anchor}) are not allowed")
            if event.tag is not None:
                raise _Refused(line, f"YAML tags ({event.tag}) are not allowed")
            if isinstance(event, yaml.ScalarEvent):
                add(_scalar(event), line)
            else:
                if len(stack) >= MAX_DEPTH:
                    raise _Refused(line, f"nesting deeper than {MAX_DEPTH} levels")
                stack.append(
                    [
                        YMap(line) if isinstance(event, yaml.MappingStartEvent) else YList(line),
                        _NO_KEY,
                        0,
                    ]
                )
    except _Refused as refused:
        return None, [*problems, Problem(file, refused.line, refused.message)]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        message = " ".join(str(s) for s in (exc.context, exc.problem) if s)
        return None, [*problems, Problem(file, line, f"YAML syntax: {message}")]
    except yaml.YAMLError as exc:
        position = getattr(exc, "position", None)
        line = text.count("\n", 0, position) + 1 if isinstance(position, int) else 0
        # One line per problem: a ReaderError's text goes on with '\n  in "<unicode string>"'.
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, [*problems, Problem(file, line, f"YAML: {first_line}")]
    except RecursionError:
        return None, [*problems, Problem(file, 0, "YAML nested too deeply")]
    if root is _NO_KEY or root is None:
        return None, [*problems, Problem(file, 1, "the file is empty: an empty map is not a map")]
    return root, problems


class _Refused(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def read_text(path: Path, file: str) -> tuple[str | None, bytes, list[Problem]]:
    """Read a map file as UTF-8 text (a BOM is allowed), or report why not."""
    try:
        # O_NONBLOCK and fstat: a FIFO put in the map's place would block a plain read until
        # a writer came (hanging startup or a reload), and /dev/zero would never end.
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as stream:
            mode = os.fstat(stream.fileno()).st_mode
            if stat.S_ISDIR(mode):
                raise IsADirectoryError
            if not stat.S_ISREG(mode):
                return (
                    None,
                    b"",
                    [Problem(file, 0, "not a regular file (a FIFO, socket or device)")],
                )
            data = stream.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            return None, b"", [Problem(file, 0, f"larger than {MAX_FILE_BYTES} bytes")]
    except IsADirectoryError:
        return None, b"", [Problem(file, 0, "is a directory, not a file")]
    except OSError as exc:
        return None, b"", [Problem(file, 0, f"cannot read: {exc.strerror or exc}")]
    try:
        return data.decode("utf-8-sig"), data, []
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return None, data, [Problem(file, line, "not UTF-8 text")]
