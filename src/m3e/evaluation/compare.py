"""`m3e eval compare`: several models' results side by side, as Markdown and a PNG bar chart of main scores."""

from __future__ import annotations

from pathlib import Path

from m3e.errors import InputError
from m3e.evaluation.runner import average, groups, load_results, summary_markdown
from m3e.utils.atomic import atomic_path


def compare(output: Path, png: Path | None = None, models: list[str] | None = None) -> tuple[str, Path | None]:
    if not output.is_dir():
        raise InputError(f"results folder {output} does not exist")
    results = load_results(output)
    if models:
        missing = [m for m in models if m not in results]
        if missing:
            raise InputError(f"no results for {', '.join(missing)} in {output}; found: {', '.join(results)}")
        results = {m: results[m] for m in models}
    if not results:
        raise InputError(f"no result files (OUTPUT/<model>/<task>.json) under {output}")
    table = summary_markdown(results)
    if png is not None:
        bar_chart(results, png)
    return table, png


def bar_chart(results: dict[str, dict[str, dict]], png: Path) -> Path:
    """Main score per task (top) and the category averages, s2c included (bottom), one bar per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tasks = sorted({t for per in results.values() for t in per},
                   key=lambda t: next(per[t]["type"] for per in results.values() if t in per) + t)
    every: dict[str, dict] = {}
    for per in results.values():
        for name, r in per.items():
            every.setdefault(name, r)
    rows = [(label, names) for label, names in groups(every) if "(type" not in label]
    width = 0.8 / len(results)
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(max(8, 0.55 * len(tasks) * max(1, len(results) / 2)), 8.5),
                                  gridspec_kw={"height_ratios": [3, 2]})
    for axis, labels, value in (
        (ax, tasks, lambda per, t: per[t]["main_score"] * 100 if t in per else 0.0),
        (ax2, [label for label, _ in rows], lambda per, label: (average(per, dict(rows)[label])[0] or 0.0) * 100),
    ):
        x = np.arange(len(labels))
        for i, (model, per) in enumerate(results.items()):
            axis.bar(x + (i - (len(results) - 1) / 2) * width, [value(per, t) for t in labels], width, label=model)
        axis.set_xticks(x, labels, rotation=60 if axis is ax else 20, ha="right", fontsize=8)
        axis.set_ylabel("main score x 100")
    ax.set_title("m3e eval: main score per task")
    ax2.set_title("averages per category (s2s, s2p, p2p, bitext, s2c) and text2vec")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return png
