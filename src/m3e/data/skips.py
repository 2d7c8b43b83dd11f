"""What a reader left out and why: the one skip report of every capability (bulk encode, training sources, index
builds, evaluation tasks), so each says it the same way and nothing is dropped silently.

A :class:`collections.Counter` of reasons (JSON-ready, ``report[reason] += n`` works) that also keeps the first
few places (``file:line``, ``row N``) of each reason.
"""

from __future__ import annotations

from collections import Counter

EXAMPLES = 5


class SkipReport(Counter):
    def __init__(self, counts=None, examples: dict[str, list[str]] | None = None) -> None:
        super().__init__(counts or {})
        self.examples: dict[str, list[str]] = {k: list(v) for k, v in (examples or {}).items()}

    def add(self, reason: str, where: object = None, n: int = 1) -> None:
        """Count ``n`` items left out for ``reason``; ``where`` (the first place) is kept for the first few."""
        if n <= 0:
            return
        self[reason] += n
        if where is not None:
            shown = self.examples.setdefault(reason, [])
            if len(shown) < EXAMPLES:
                shown.append(str(where))

    def merge(self, other: SkipReport | dict, prefix: str = "") -> None:
        for reason, n in other.items():
            self[prefix + reason] += n
            for where in getattr(other, "examples", {}).get(reason, []):
                shown = self.examples.setdefault(prefix + reason, [])
                if len(shown) < EXAMPLES:
                    shown.append(where)

    def lines(self, unit: str = "rows") -> list[str]:
        """One line per reason: ``skipped 3 rows: empty text (e.g. a.txt:4, a.txt:9)``."""
        out = []
        for reason, n in sorted(self.items()):
            shown = self.examples.get(reason)
            out.append(f"skipped {n} {unit}: {reason}" + (f" (e.g. {', '.join(shown)})" if shown else ""))
        return out

    def summary(self) -> str:
        """All reasons on one line, most frequent first: ``12 over max_records, 1 malformed row (first at row 9)``."""
        return ", ".join(f"{n} {why}" + (f" (first at {self.examples[why][0]})" if self.examples.get(why) else "")
                         for why, n in self.most_common()) or "none"

    def __reduce__(self):
        return type(self), (dict(self), self.examples)

    def __repr__(self) -> str:
        return f"SkipReport({dict(self)!r})"
