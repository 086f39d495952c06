"""Finds solutions by convention: every installed package that declares an entry point in the group
``solutions_core.solutions`` is an app. Nothing is registered by hand; an app that is not an installed
package (a test's, a notebook's) is named in ``Settings.apps`` (``SOLUTIONS_APPS``) instead.

Listing reads only the entry-point metadata, so ``solutions list`` never imports TensorFlow; loading a
solution imports its package's ``__init__``, which by convention is light as well.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - typing only
    from solutions_core.solution import Solution

ENTRY_POINT_GROUP = "solutions_core.solutions"


@dataclass(frozen=True)
class SolutionEntry:
    name: str
    target: str  # "module:attribute"
    distribution: str
    version: str


def _configured_apps() -> list[str]:
    from solutions_core.settings import Settings

    return list(Settings().apps)


def list_solutions() -> list[SolutionEntry]:
    """Installed solutions (and those ``Settings.apps`` names), sorted by name, without importing them."""
    entries = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        distribution = entry.dist.name if entry.dist else "?"
        version = entry.dist.version if entry.dist else "?"
        entries[entry.name] = SolutionEntry(entry.name, entry.value, distribution, version)
    for target in _configured_apps():  # not packages: imported to learn their names (keep them light)
        name = _load(target).name
        entries.setdefault(name, SolutionEntry(name, target, "(Settings.apps)", "-"))
    return sorted(entries.values(), key=lambda e: e.name)


def _load(target: str) -> "Solution":
    from solutions_core.solution import Solution

    module, _, attribute = target.partition(":")
    solution = getattr(importlib.import_module(module), attribute or "SOLUTION")
    if not isinstance(solution, Solution):
        raise TypeError(f"{target} is a {type(solution).__name__}, not a solutions_core.Solution instance.")
    return solution


@cache
def get_solution(name: str) -> "Solution":
    """Load one solution by name (accepts ``fraud-detection`` and ``fraud_detection``)."""
    wanted = name.replace("-", "_")
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == wanted:
            return _load(entry.value)
    for target in _configured_apps():
        solution = _load(target)
        if solution.name == wanted:
            return solution
    known = ", ".join(e.name for e in list_solutions()) or "none installed"
    raise KeyError(f"No solution named {name!r}. Installed solutions: {known}.")
