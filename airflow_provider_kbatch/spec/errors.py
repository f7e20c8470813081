"""Errors raised for an invalid stage description.

Every problem names the field *as the DAG author wrote it* (the operator argument, e.g.
``backoff_limit_per_index``), says what is wrong and how to fix it. Validation collects every
problem before raising, so the author sees all mistakes at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from airflow_provider_kbatch.errors import KbatchError


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:-1] if text.endswith(".") else text


class KbatchSpecError(KbatchError, ValueError):
    """One invalid field: ``str(err) == "<field>: <problem>. <fix>"``. Final: a retry runs the same
    arguments."""

    final = True

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        self.problem = _sentence(problem)
        self.fix = fix.strip()
        super().__init__(self._render())

    def _render(self) -> str:
        text = f"{self.field}: {self.problem}."
        return f"{text} {self.fix}" if self.fix else text

    def __str__(self) -> str:
        return self._render()

    def __reduce__(self) -> tuple[type[KbatchSpecError], tuple[str, str, str]]:
        return (type(self), (self.field, self.problem, self.fix))


class KbatchSpecErrors(KbatchSpecError):
    """Several invalid fields at once; ``.errors`` lists each one.

    A subclass of :class:`KbatchSpecError`, so ``except KbatchSpecError`` catches both; ``.field``
    is the comma-separated list of the fields involved.
    """

    def __init__(self, errors: Iterable[KbatchSpecError]) -> None:
        self.errors: tuple[KbatchSpecError, ...] = tuple(errors)
        if not self.errors:
            raise ValueError("KbatchSpecErrors needs at least one error")
        fields = dict.fromkeys(e.field for e in self.errors)
        super().__init__(", ".join(fields), f"{len(self.errors)} problems in the stage description")

    def _render(self) -> str:
        lines = [f"{len(self.errors)} problems in the stage description:"]
        lines.extend(f"  - {err}" for err in self.errors)
        return "\n".join(lines)

    def __iter__(self) -> Iterator[KbatchSpecError]:
        return iter(self.errors)

    def __len__(self) -> int:
        return len(self.errors)

    def __reduce__(self) -> tuple[type[KbatchSpecErrors], tuple[tuple[KbatchSpecError, ...]]]:  # type: ignore[override]
        return (type(self), (self.errors,))


class ProblemCollector:
    """Collects problems, then raises them all at once (or nothing)::

    problems = ProblemCollector()
    problems.add("completions", "must be at least 1, got 0", "Pass completions=1 or more.")
    problems.raise_if_any()  # raises KbatchSpecError("completions: must be ...")
    """

    def __init__(self) -> None:
        self._errors: list[KbatchSpecError] = []

    def add(self, field: str, problem: str, fix: str = "") -> None:
        self._errors.append(KbatchSpecError(field, problem, fix))

    def extend(self, errors: Iterable[KbatchSpecError]) -> None:
        self._errors.extend(errors)

    @property
    def errors(self) -> tuple[KbatchSpecError, ...]:
        return tuple(self._errors)

    def __bool__(self) -> bool:
        return bool(self._errors)

    def __len__(self) -> int:
        return len(self._errors)

    def raise_if_any(self) -> None:
        """Raise the single error, or a :class:`KbatchSpecErrors` listing all of them."""
        if len(self._errors) == 1:
            raise self._errors[0]
        if self._errors:
            raise KbatchSpecErrors(self._errors)
