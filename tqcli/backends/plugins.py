"""Backend discovery through the `tqcli.backends` entry-point group.

Built-in backends (`simple`, `shell`) are declared in tqcli's own
pyproject.toml like any third-party plugin, so there is one discovery path.

Discovery reads the installed distributions' `entry_points.txt` directly
(the same files `importlib.metadata` reads), because importing
`importlib.metadata` alone costs ~25 ms of start-up, paid by every
`submit` and every executor process. A test keeps the two in agreement.
"""

from __future__ import annotations

import os
import sys
from typing import Any

GROUP = "tqcli.backends"
# Declared by tqcli's own distribution (pyproject.toml), so installed wherever tqcli is; a test keeps the two in agreement.
BUILT_IN = frozenset({"simple", "shell"})


class BackendInfo:
    """Where a backend comes from: its name, `module:attr` and distribution."""

    __slots__ = ("name", "value", "distribution")

    def __init__(self, name: str, value: str, distribution: str) -> None:
        self.name = name
        self.value = value
        self.distribution = distribution

    def __repr__(self) -> str:
        return f"BackendInfo({self.name!r}, {self.value!r}, {self.distribution!r})"


def _entry_points_files() -> list[tuple[str, str]]:
    """`(distribution folder, entry_points.txt path)` for every distribution on sys.path."""
    found = []
    for folder in sys.path:
        if not folder or not os.path.isdir(folder):
            continue
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if name.endswith((".dist-info", ".egg-info")):
                path = os.path.join(folder, name, "entry_points.txt")
                if os.path.isfile(path):
                    found.append((name, path))
    return found


def _group_lines(path: str) -> list[tuple[str, str]]:
    pairs, inside = [], False
    try:
        with open(path, encoding="utf-8") as handle:
            for raw in handle:
                line = raw.strip()
                if not line or line.startswith(("#", ";")):
                    continue
                if line.startswith("["):
                    inside = line == f"[{GROUP}]"
                    continue
                if inside and "=" in line:
                    name, value = line.split("=", 1)
                    pairs.append((name.strip(), value.strip()))
    except OSError:
        pass
    return pairs


def _distribution_name(folder: str) -> str:
    stem = folder.rsplit(".", 1)[0]
    return stem.split("-", 1)[0]


def discover() -> dict[str, BackendInfo]:
    """Every backend declared in the group, first distribution on sys.path winning."""
    backends: dict[str, BackendInfo] = {}
    seen_dists: set[str] = set()
    for folder, path in _entry_points_files():
        dist = _distribution_name(folder)
        normalized = dist.lower().replace("-", "_")
        if normalized in seen_dists:
            continue  # a shadowed copy of a distribution further down sys.path
        seen_dists.add(normalized)
        for name, value in _group_lines(path):
            backends.setdefault(name, BackendInfo(name, value, dist))
    return backends


def backend_names() -> list[str]:
    """The names of every installed backend, sorted."""
    return sorted(discover())


def missing_backends(names: set[str]) -> list[str]:
    """Those of `names` no installed distribution declares, sorted; the built-in ones need no discovery (1 ms of a submit)."""
    if names <= BUILT_IN:
        return []
    available = discover()
    return sorted(name for name in names if name not in available)


def load_backend(name: str) -> Any:
    """A new instance of backend `name`: its entry point's object, called with no arguments."""
    import importlib

    info = discover().get(name)
    if info is None:
        raise LookupError(f"no backend named {name!r} in entry-point group {GROUP}")
    reference = info.value.split("[", 1)[0].strip()  # "module:attr [extras]"
    module_name, _, attribute = reference.partition(":")
    found: Any = importlib.import_module(module_name.strip())
    for part in filter(None, attribute.strip().split(".")):
        found = getattr(found, part)
    return found()
