"""One line of the reliability report (:mod:`ufd_lib.reliability.selfcheck`)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Check:
    """One line of the report: ``cases`` tried, ``as_expected`` of them ended correctly;
    ``differences``: results that differ from a clean run (None where there is no clean run)."""

    name: str
    cases: int
    as_expected: int
    differences: int | None
    detail: str
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.cases > 0 and self.as_expected == self.cases and not self.differences
