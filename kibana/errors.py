"""Errors of the kibana package.

::

    KibanaError                      anything kibana/ raises on purpose
    ├── SavedObjectsError            the saved objects are inconsistent (a dangling reference, a bad panel)
    ├── KibanaUnavailable            Kibana did not report "available" before the timeout, or is unreachable
    ├── KibanaAuthError              401/403: the credentials are missing, wrong or lack a privilege
    ├── KibanaRequestError           any other unexpected HTTP answer (status and body kept)
    └── KibanaImportError            the import answered, but some objects failed (each listed with id and reason)
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "KibanaError",
    "SavedObjectsError",
    "KibanaUnavailable",
    "KibanaAuthError",
    "KibanaRequestError",
    "KibanaImportError",
    "ObjectError",
]


class KibanaError(Exception):
    """Base of every error kibana/ raises on purpose."""


class SavedObjectsError(KibanaError):
    """The generated saved objects are inconsistent; the message lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid saved objects:\n" + "\n".join(f"  {p}" for p in problems))


class KibanaUnavailable(KibanaError):
    """Kibana is unreachable or did not become available in time."""


class KibanaAuthError(KibanaError):
    """Kibana refused the credentials (401) or the user lacks a privilege (403)."""


class KibanaRequestError(KibanaError):
    """An HTTP answer the provisioner did not expect."""

    def __init__(self, message: str, *, status: int, body: str) -> None:
        self.status = status
        self.body = body
        super().__init__(f"{message}: HTTP {status}: {body[:500]}")


@dataclass(frozen=True)
class ObjectError:
    """One object the import rejected: ``kind`` is Kibana's ``error.type`` (conflict, missing_references, ...)."""

    type: str
    id: str
    title: str
    kind: str
    detail: str = ""
    missing: tuple[str, ...] = field(default_factory=tuple)

    def __str__(self) -> str:
        text = f"{self.type} {self.id} ({self.title or 'untitled'}): {self.kind}"
        if self.missing:
            text += f", missing references: {', '.join(self.missing)}"
        if self.detail:
            text += f": {self.detail}"
        return text


class KibanaImportError(KibanaError):
    """The import ran but did not succeed for every object."""

    def __init__(self, errors: list[ObjectError], *, success_count: int) -> None:
        self.errors = errors
        self.success_count = success_count
        lines = "\n".join(f"  {e}" for e in errors)
        super().__init__(f"Kibana rejected {len(errors)} saved object(s) ({success_count} imported):\n{lines}")
