"""Finds solutions by convention: every installed package that declares an entry point in the group
``solutions_core.solutions`` is an app. Nothing is registered by hand.

Listing reads only the entry-point metadata, so ``solutions list`` never imports TensorFlow; loading a
solution imports its package's ``__init__``, which by convention is light as well.
"""

from __future__ import annotations

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


def list_solutions() -> list[SolutionEntry]:
    """Installed solutions, sorted by name, without importing them."""
    entries = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        distribution = entry.dist.name if entry.dist else "?"
        version = entry.dist.version if entry.dist else "?"
        entries.append(SolutionEntry(entry.name, entry.value, distribution, version))
    return sorted(entries, key=lambda e: e.name)


@cache
def get_solution(name: str) -> "Solution":
    """Load one solution by name (accepts ``fraud-detection`` and ``fraud_detection``)."""
    # Imported here so listing stays free of numpy/pandas (DAG files list apps at parse time).
    from solutions_core.solution import Solution

    wanted = name.replace("-", "_")
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == wanted:
            solution = entry.load()
            if not isinstance(solution, Solution):
                raise TypeError(
                    f"Entry point {entry.name!r} -> {entry.value} is a {type(solution).__name__}, "
                    "not a solutions_core.Solution instance."
                )
            return solution
    known = ", ".join(e.name for e in list_solutions()) or "none installed"
    raise KeyError(f"No solution named {name!r}. Installed solutions: {known}.")
