"""Recipes: a YAML file that names the base model, the training sources (paths under the data folder, with the
options of :func:`m3e.data.records.read_source`), the training options and the evaluation tasks, so one command
reproduces a model: ``m3e train recipes/m3e-small-zh.yaml``.

Sources are read through the Arrow cache (:mod:`m3e.data.prepared`). Every recipe filters training records that
overlap any evaluation text (all built-in tasks unless ``filter_tasks`` narrows it) and reports the counts, and
the license each source states.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

from m3e.data.overlap import banned_hashes, filter_sources
from m3e.data.passages import to_passages
from m3e.data.prepared import prepare_source
from m3e.data.records import check_parallel, unique_names
from m3e.data.texthash import norm
from m3e.errors import InputError
from m3e.training.trainer import FineTuner, TrainConfig
from m3e.utils.atomic import write_text

SOURCE_KEYS = {"path", "name", "weight", "instruction", "doc_instruction", "columns", "rename", "max_negatives",
               "max_records", "format", "passages", "keep_base", "encoding", "replace", "license", "parallel"}
PASSAGE_KEYS = {"size", "records", "min_score"}
RECIPE_KEYS = {"name", "base", "description", "sources", "max_records", "train", "rerank", "eval_tasks",
               "filter_tasks", "filter_files"}


def read_recipe_file(path: Path, keys: set[str], what: str, required: tuple[str, ...]) -> dict:
    """A recipe's YAML mapping, its keys checked (training and distill recipes alike)."""
    import yaml

    try:
        recipe = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"recipe {path} not found") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: invalid YAML ({exc})") from None
    if not isinstance(recipe, dict):
        raise InputError(f"{path}: {what} is a mapping with keys {sorted(keys)}")
    unknown = set(recipe) - keys
    if unknown:
        raise InputError(f"{path}: unknown keys {sorted(unknown)}; known: {sorted(keys)}")
    for key in required:
        if key not in recipe:
            raise InputError(f"{path}: missing '{key}'")
    return recipe


def load_recipe(path: Path) -> dict:
    recipe = read_recipe_file(path, RECIPE_KEYS, "a recipe", required=("base", "sources"))
    cap = recipe.get("max_records")
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
        raise InputError(f"{path}: max_records is a positive whole number of records per source, not {cap!r}")
    from m3e.training.cross_encoder import RerankConfig

    if recipe.get("train") and recipe.get("rerank"):
        raise InputError(f"{path}: a recipe trains an embedding model (train:) or a reranker (rerank:), not both")
    for section, config in (("train", TrainConfig), ("rerank", RerankConfig)):
        bad = set(recipe.get(section) or {}) - {f.name for f in fields(config)}
        if bad:
            raise InputError(f"{path}: unknown {section} options {sorted(bad)}")
    check_sources(path, recipe["sources"])
    check_filter_files(path, recipe.get("filter_files"))
    return recipe


def check_sources(path: Path, sources) -> None:
    """Every source spec is a mapping with a 'path' and known keys (training and distill recipes alike)."""
    if not isinstance(sources, list):
        raise InputError(f"{path}: 'sources' is a list of mappings with a 'path'")
    for i, spec in enumerate(sources):
        if not isinstance(spec, dict) or "path" not in spec:
            raise InputError(f"{path}: source {i} needs a 'path'")
        if set(spec) - SOURCE_KEYS:
            raise InputError(f"{path}: source {i} has unknown keys {sorted(set(spec) - SOURCE_KEYS)}")
        options = spec.get("passages")
        if options is not None and (not isinstance(options, dict) or set(options) - PASSAGE_KEYS):
            raise InputError(f"{path}: source {i}: passages takes a mapping with keys {sorted(PASSAGE_KEYS)}")
        if "parallel" in spec:
            check_parallel(spec["parallel"], f"{path}: source {i}")
    check_not_held_back(path, sources)


FILTER_FILE_KEYS = {"path", "format", "columns", "encoding"}


def check_filter_files(path: Path, specs) -> None:
    for i, spec in enumerate(specs or []):
        if not isinstance(spec, dict) or "path" not in spec or set(spec) - FILTER_FILE_KEYS:
            raise InputError(f"{path}: filter_files entry {i} is a mapping with 'path' and optionally "
                             f"{sorted(FILTER_FILE_KEYS - {'path'})}")


def file_texts(data_dir: Path, spec: dict) -> list[str]:
    """Every text field of a held-back file (evaluation or validation data no built-in task reads yet)."""
    from m3e.data.records import file_rows

    out: list[str] = []
    for _, row in file_rows(data_dir / spec["path"], spec.get("format"), spec.get("encoding"),
                            spec.get("columns")):
        out.extend(v for v in (row or {}).values() if isinstance(v, str) and v.strip())
    return out


def task_texts(data) -> list[str]:
    """Every text a task's data holds, whatever its type."""
    out: list[str] = []
    for attr in ("sentences1", "sentences2", "texts", "train_texts", "queries", "corpus"):
        out.extend(getattr(data, attr, None) or [])
    for cands in getattr(data, "candidates", None) or []:
        out.extend(cands)
    return out


def evaluation_texts(data_dir: Path, task_names: list[str] | None = None,
                     files: list[dict] = ()) -> tuple[set[str], dict[str, int]]:
    """The texts of the built-in evaluation and validation tasks (all, or ``task_names``; an empty list: none)
    and of held-back ``files`` (a recipe's ``filter_files``), and how many each has. "All" also holds back the
    evaluation files no task reads (HELD_BACK_FILES)."""
    from m3e.evaluation.builtin import BUILTIN_TASKS, HELD_BACK_FILES, select_tasks

    texts: set[str] = set()
    sizes: dict[str, int] = {}
    tasks = [] if task_names is not None and not task_names else (  # `filter_tasks: []`: no built-in task
        select_tasks(task_names) if task_names else BUILTIN_TASKS.values())
    for task in tasks:
        found = {norm(t) for t in task_texts(task.load(data_dir))}
        sizes[task.name] = len(found)
        texts |= found
    for spec in [*(() if task_names is not None else HELD_BACK_FILES), *files]:
        found = {norm(t) for t in file_texts(data_dir, spec)}
        sizes[f"file:{spec['path']}"] = len(found)
        texts |= found
    return texts, sizes


def check_not_held_back(path: Path, specs: list[dict]) -> None:
    """A source that points at an evaluation file no task reads is a mistake, not data to filter to nothing."""
    from m3e.evaluation.builtin import HELD_BACK_FILES

    held = {Path(f["path"]).as_posix() for f in HELD_BACK_FILES}
    for i, spec in enumerate(specs):  # check_parallel has run on every spec
        for file in (spec["path"], *([spec["parallel"]["path"]] if "parallel" in spec else [])):
            where = Path(str(file)).as_posix()
            if any(where == h or where.endswith("/" + h) for h in held):
                raise InputError(f"{path}: source {i} ({file}) is an EVALUATION file of the data folder "
                                 "(held back from training; see the data folder's README)")


def read_sources(specs: list[dict], base: Path, cache_dir: Path | None = None, caps: list[int] = ()):
    """Source specs (checked by :func:`check_sources`) -> (sources, {index: passages options}): the one reader of
    source specs, for recipes and ``m3e finetune --sources``. A relative path is under ``base``."""
    sources, passages = [], {}
    for spec in specs:
        spec = dict(spec)
        limit = min([c for c in (spec.pop("max_records", None), *caps) if c] or [0]) or None
        as_passages = spec.pop("passages", None)
        named = "name" in spec
        if "parallel" in spec:  # its path is relative to the same base
            twin = Path(base) / Path(spec["parallel"]["path"]).expanduser()
            spec["parallel"] = {**spec["parallel"], "path": str(twin)}
        source = prepare_source(Path(base) / Path(spec.pop("path")).expanduser(), cache_dir, **spec)
        if as_passages is not None:
            passages[len(sources)] = as_passages
            if not named:
                source.name += "-passages"
        if limit:
            source.sample(limit)
        sources.append(source)
    for line in unique_names(sources):
        print(line)
    return sources, passages


def sources_file(path: Path, cache_dir: Path | None = None) -> list:
    """``m3e finetune --sources FILE``: a JSON or YAML list of source specs, the same keys as a recipe's
    ``sources`` (paths relative to the file); no test-overlap filter (that is what recipes add)."""
    import yaml

    try:
        specs = yaml.safe_load(Path(path).read_text(encoding="utf-8"))  # JSON is YAML
    except OSError as exc:
        raise InputError(f"{path}: cannot read the sources list ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: invalid JSON/YAML ({exc})") from None
    check_sources(path, specs)
    sources, passages = read_sources(specs, Path(path).parent, cache_dir)
    for i, options in passages.items():
        sources[i] = to_passages(sources[i].to_memory(), **options)
    return sources


def build_sources(recipe: dict, data_dir: Path, cache_dir: Path | None = None, max_records: int | None = None):
    """(sources, overlap report, evaluation text counts per task). A source takes the smallest of its own
    ``max_records``, the recipe's (every source) and ``max_records`` (a smoke run of the same recipe); the same
    cap from any of the three draws the same fixed-seed sample."""
    sources, passages = read_sources(recipe["sources"], data_dir, cache_dir,
                                     [c for c in (recipe.get("max_records"), max_records) if c])
    texts, sizes = evaluation_texts(data_dir, recipe.get("filter_tasks"), recipe.get("filter_files") or [])
    report = filter_sources(sources, banned_hashes(texts))
    for i, options in passages.items():  # after the filter: passages hold no evaluation text
        sources[i] = to_passages(sources[i].to_memory(), **options)
        report[sources[i].name]["kept"] = len(sources[i])
    for source in sources:
        report[source.name]["license"] = source.license
    return sources, report, sizes


def run_recipe(path: Path, data_dir: Path, output: Path | None = None, device: str | None = None,
               threads: int | None = None, cache_dir: Path | None = None, max_records: int | None = None,
               base: str | None = None, **overrides) -> Path:
    """``base``: start from another model than the recipe's (a run continued from an earlier model); the report
    records the one used."""
    from m3e.models.resolver import load_model

    recipe = load_recipe(path)
    if base:
        recipe = {**recipe, "base": base, "recipe_base": recipe["base"]}
    sources, report, sizes = build_sources(recipe, data_dir, cache_dir, max_records)
    files = sum(k.startswith("file:") for k in sizes)
    print(f"test-overlap filter against {sum(sizes.values()):,} evaluation texts of {len(sizes) - files} tasks and "
          f"{files} held-back files:")
    for name, counts in report.items():
        print(f"  {name}: kept {counts['kept']:,}, dropped {counts['dropped_records']:,} records, removed "
              f"{counts['removed_negatives']:,} negatives")
    if "rerank" in recipe:
        from m3e.training.cross_encoder import RerankConfig, train_reranker

        keep = {"max_steps", "epochs", "batch_size", "resume"}
        opts = {**recipe["rerank"], **{k: v for k, v in overrides.items() if v is not None and k in keep}}
        opts["output"] = str(output or opts.get("output") or recipe.get("name", "m3e-reranker"))
        out = train_reranker(recipe["base"], sources, RerankConfig(**opts, device=device, threads=threads))
        write_text(out / "recipe_report.json", json.dumps({"recipe": recipe, "max_records": max_records,
                                                           "overlap_filter": report, "evaluation_texts": sizes},
                                                          indent=2, ensure_ascii=False))
        return out
    train = {**(recipe.get("train") or {}), **{k: v for k, v in overrides.items() if v is not None}}
    train["output"] = str(output or train.get("output") or recipe.get("name", "m3e-model"))
    if recipe.get("eval_tasks"):
        train.setdefault("eval_tasks", recipe["eval_tasks"])
        train.setdefault("eval_data_dir", str(data_dir))
    out = FineTuner(load_model(recipe["base"], device=device, threads=threads), sources).run(TrainConfig(**train))
    write_text(out / "recipe_report.json", json.dumps({"recipe": recipe, "max_records": max_records,
                                                       "overlap_filter": report,
                                                       "evaluation_texts": sizes}, indent=2, ensure_ascii=False))
    return out
