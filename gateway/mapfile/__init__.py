"""The redirect map (spec: redirect-map.md): its values and the loader that builds them.

A package by job: ``values`` (``RedirectMap``, ``Site``, ``Archive``, ``Problem``),
``yamltext`` (files as text, YAML with line numbers), ``schema`` (sections and rule
fields), ``tables`` (CSV rules) and ``loader`` (``load_map``: includes, version,
duplicates). The names other modules use are re-exported here. Pure: no Flask.
"""

from __future__ import annotations

from gateway.mapfile.loader import load_map, with_captures
from gateway.mapfile.schema import RULE_KEYS, SITE_KEYS, TOP_KEYS, compile_rule
from gateway.mapfile.tables import CSV_HEADER, compile_csv
from gateway.mapfile.values import (
    DEFAULT_IGNORE_QUERY,
    MAX_PROBLEMS,
    STATUSES,
    Archive,
    MapError,
    Problem,
    RedirectMap,
    Site,
    is_wildcard,
)
from gateway.mapfile.yamltext import MAX_DEPTH, MAX_FILE_BYTES, YList, YMap, read_text, read_yaml
from gateway.rules import Rule

__all__ = [
    "CSV_HEADER",
    "DEFAULT_IGNORE_QUERY",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_PROBLEMS",
    "RULE_KEYS",
    "SITE_KEYS",
    "STATUSES",
    "TOP_KEYS",
    "Archive",
    "MapError",
    "Problem",
    "RedirectMap",
    "Rule",
    "Site",
    "YList",
    "YMap",
    "compile_csv",
    "compile_rule",
    "is_wildcard",
    "load_map",
    "read_text",
    "read_yaml",
    "with_captures",
]
