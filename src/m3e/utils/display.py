"""Terminal tables (rich) shared by the CLI commands."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

console = Console()


def _short(text: str, width: int = 28) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def similarity_table(texts: list[str], matrix, title: str) -> None:
    table = Table(title=title, show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("text")
    for j in range(len(texts)):
        table.add_column(str(j), justify="right")
    for i, text in enumerate(texts):
        cells = []
        for j in range(len(texts)):
            v = float(matrix[i][j])
            cells.append(f"[bold]{v:.3f}[/bold]" if i != j and v == max(
                float(matrix[i][k]) for k in range(len(texts)) if k != i) else f"{v:.3f}")
        table.add_row(str(i), _short(text), *cells)
    console.print(table)


def models_table(rows: list[dict]) -> None:
    table = Table(title="models")
    for col in ("name", "dim", "size", "status"):
        table.add_column(col, no_wrap=True)  # names are copied into commands: never break them
    table.add_column("what it is")
    for row in rows:
        size = row.get("bytes")
        table.add_row(row["name"], str(row.get("dim") or "?"), f"{size / 1e6:,.0f} MB" if size else "?",
                      row["status"], row.get("description") or row["provenance"])
    console.print(table)
