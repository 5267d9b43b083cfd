"""Errors of the rule engine::

    RulesError       a rule file that cannot be used; ``str(exc)`` is one
                     ``FILE:LINE:COLUMN: where: what`` line per problem
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RulesError", "Problem"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a rule file, at a 1-based line and column."""

    file: str
    line: int
    column: int
    where: str
    message: str

    def __str__(self) -> str:
        where = f" {self.where}:" if self.where else ""
        return f"{self.file}:{self.line}:{self.column}:{where} {self.message}"


class RulesError(ValueError):
    """A rule file is invalid; ``problems`` lists every error found, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.column))
        super().__init__("\n".join(str(p) for p in self.problems))
