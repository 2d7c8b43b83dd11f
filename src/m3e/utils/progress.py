"""Progress of long jobs: a tqdm bar on a terminal, a plain line every ``$M3E_PROGRESS_SECONDS`` (30) otherwise,
so a job whose stderr goes to a log file (nohup, CI, a scheduler) is never silent for its whole run."""

from __future__ import annotations

import os
import sys
import time


class LineProgress:
    """The part of tqdm's interface the jobs use, printing one line per interval (and one at the end)."""

    def __init__(self, total: float | None, desc: str, unit: str, unit_scale: bool = False, stream=None) -> None:
        self.total, self.desc, self.unit, self.unit_scale = total, desc, unit, unit_scale
        self.n = 0.0
        self.postfix = ""
        self.stream = stream or sys.stderr
        self.every = float(os.environ.get("M3E_PROGRESS_SECONDS", "30"))
        self.start = self.last = time.monotonic()

    def _amount(self, value: float) -> str:
        if not self.unit_scale:
            return f"{value:,.0f}"
        for prefix in ("", "k", "M", "G", "T"):
            if abs(value) < 1000:
                return f"{value:.1f}{prefix}"
            value /= 1000
        return f"{value:.1f}P"

    def _line(self) -> str:
        elapsed = time.monotonic() - self.start
        done = f"{self._amount(self.n)}{'/' + self._amount(self.total) if self.total else ''} {self.unit}"
        share = f" ({100 * self.n / self.total:.1f}%)" if self.total else ""
        rate = f", {self._amount(self.n / elapsed)} {self.unit}/s" if elapsed > 0 else ""
        extra = f", {self.postfix}" if self.postfix else ""
        return f"{self.desc}: {done}{share} after {elapsed:.0f} s{rate}{extra}"

    def update(self, n: float = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            print(self._line(), file=self.stream, flush=True)

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        print(self._line(), file=self.stream, flush=True)


def progress(total: float | None = None, *, desc: str, unit: str, unit_scale: bool = False):
    """A bar on a terminal, else :class:`LineProgress`."""
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        return tqdm(total=total, unit=unit, unit_scale=unit_scale, desc=desc, dynamic_ncols=True)
    return LineProgress(total, desc, unit, unit_scale)
