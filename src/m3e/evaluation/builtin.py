"""The built-in Chinese tasks, read from the original files in the data folder (never a copy in the repo).

Each task's description says where our file differs from C-MTEB's (split, size, sampling). Corpora without
a split get a fixed-seed stratified split (seed 42), so every run and every model sees the same rows.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from m3e.data.skips import SkipReport
from m3e.errors import InputError
from m3e.evaluation.data import csv_rows, field_text, jsonl_rows, lines, need, read_json
from m3e.evaluation.tasks import CATEGORIES, LANGUAGES, SPLITS, Task
from m3e.evaluation.types import MAIN_SCORES
from m3e.evaluation.types import task_type as task_type_named
from m3e.evaluation.types.bitext import BitextData
from m3e.evaluation.types.classification import LabelledData, clean_labelled, split_train_test
from m3e.evaluation.types.reranking import RerankingData
from m3e.evaluation.types.retrieval import RetrievalData
from m3e.evaluation.types.sts import PairData, load_jsonl_pairs, load_tsv_pairs

NLI = {"entailment": 1.0, "contradiction": 0.0}
SEED = 42


# --- loaders --------------------------------------------------------------------------------------------------

def _jsonl_labelled(path: Path, text_key: str, label_key: str, min_per_label: int = 1) -> LabelledData:
    rows = ((no, field_text(path, no, row, text_key), str(row.get(label_key, "")) or _no_label(path, no, label_key))
            for no, row in jsonl_rows(path))
    return clean_labelled(path, rows, min_per_label)


def _no_label(path: Path, no: int, key: str) -> str:
    raise InputError(f"{path}:{no}: missing field '{key}'")


def load_tnews(root: Path) -> LabelledData:
    """Test: CLUE TNEWS dev (C-MTEB's validation split). Training pool: FewCLUE's public TNEWS test, minus the
    titles it shares with the dev file (C-MTEB draws from CLUE train, which is not in the data folder)."""
    test = _jsonl_labelled(root / "TNEWS" / "dev.json", "sentence", "label_desc")
    pool = _jsonl_labelled(root / "FewCLUE_tnews" / "test_public.json", "sentence", "label_desc")
    seen = set(test.texts)
    keep = [i for i, t in enumerate(pool.texts) if t not in seen]
    test.dropped.add("train-pool title also in test", n=len(pool.texts) - len(keep))
    test.train_texts = [pool.texts[i] for i in keep]
    test.train_labels = [pool.labels[i] for i in keep]
    test.dropped.merge(pool.dropped, prefix="train pool: ")
    return test


def _split(loader, test_size):
    return lambda root: split_train_test(loader(root), test_size, SEED)


def load_chnsenticorp(root: Path) -> LabelledData:
    path = root / "ChnSentiCorp" / "dev.tsv"

    def rows():
        for no, line in lines(path):
            text, sep, label = line.rpartition("\t")
            if not sep or label not in ("positive", "negative"):
                raise InputError(f"{path}:{no}: expected text<TAB>positive|negative")
            yield no, text, label

    return clean_labelled(path, rows())


def load_waimai(root: Path) -> LabelledData:
    path = root / "waimai_10k" / "waimai_10k.csv"
    return clean_labelled(path, ((no, field_text(path, no, r, "review"), field_text(path, no, r, "label"))
                                 for no, r in csv_rows(path)))


def load_online_shopping(root: Path) -> LabelledData:
    path = need(root / "online_shopping_10_cats" / "online_shopping_10_cats.zip")
    with zipfile.ZipFile(path) as z:
        text = z.read("online_shopping_10_cats.csv").decode("utf-8-sig")
    where = path / "online_shopping_10_cats.csv"
    return clean_labelled(where, ((no, r.get("review") or "", field_text(where, no, r, "label"))
                                  for no, r in csv_rows(where, text)))


def _tsv_fields(path: Path, n: int, what: str) -> list[tuple[int, list[str]]]:
    """(line, fields) of a header-less tab-separated file whose every line has ``n`` fields."""
    rows = []
    for no, line in lines(path):
        parts = line.split("\t")
        if len(parts) != n:
            raise InputError(f"{path}:{no}: expected {what}, found {len(parts)} fields")
        rows.append((no, parts))
    return rows


def _csl_columns(path: Path) -> list[tuple[int, str, str]]:
    return [(no, parts[1], parts[2]) for no, parts in _tsv_fields(path, 3, "3 tab-separated fields")]


def load_csl_titles(root: Path) -> LabelledData:
    path = root / "CSL_benchmark" / "cls_ctg" / "test.tsv"
    return clean_labelled(path, _csl_columns(path))


def load_csl_title_abstract(root: Path) -> LabelledData:
    ctg = _csl_columns(root / "CSL_benchmark" / "cls_ctg" / "test.tsv")
    ts = _csl_columns(root / "CSL_benchmark" / "ts" / "test.tsv")
    if len(ctg) != len(ts) or any(a[1] != b[2] for a, b in zip(ctg, ts, strict=True)):
        raise InputError(f"{root / 'CSL_benchmark'}: cls_ctg and ts test files are not row-aligned")
    rows = ((no, title + abstract, label) for (no, title, label), (_, abstract, _) in zip(ctg, ts, strict=True))
    return clean_labelled(root / "CSL_benchmark", rows)


def load_csl_disciplines(root: Path) -> LabelledData:
    path = root / "CSL_benchmark" / "cls_dcp" / "test.tsv"
    return clean_labelled(path, _csl_columns(path))


def load_csl_retrieval(root: Path) -> RetrievalData:
    """Queries: titles; corpus: abstracts (duplicates merged into one document); qrels: the same paper."""
    data = RetrievalData([], [], [], [])
    ids: dict[str, str] = {}
    for _no, abstract, title in _csl_columns(root / "CSL_benchmark" / "ts" / "test.tsv"):
        if abstract not in ids:
            ids[abstract] = f"d{len(ids)}"
            data.corpus.append(abstract)
            data.doc_ids.append(ids[abstract])
        else:
            data.dropped.add("duplicate abstract merged")
        data.queries.append(title)
        data.qrels.append({ids[abstract]: 1})
    return data


def _cmrc_paragraphs(path: Path, data: RetrievalData, with_questions: bool) -> None:
    from m3e.data.records import squad_paragraphs

    if not path.is_file():
        raise InputError(f"{path}: no such file")
    for pid, context, questions in squad_paragraphs(path):
        if pid is None:
            raise InputError(f"{path}: a paragraph has no id")
        data.corpus.append(context)
        data.doc_ids.append(pid)
        for question in questions if with_questions else []:
            if not (question or "").strip():
                data.dropped.add("empty question")
                continue
            data.queries.append(question)
            data.qrels.append({pid: 1})
    if len(set(data.doc_ids)) != len(data.doc_ids):
        raise InputError(f"{path}: paragraph ids are not unique")


def load_cmrc_retrieval(root: Path) -> RetrievalData:
    data = RetrievalData([], [], [], [])
    _cmrc_paragraphs(root / "CMRC2018" / "cmrc2018_dev.json", data, with_questions=True)
    return data


def load_cmrc_retrieval_hard(root: Path) -> RetrievalData:
    """The dev questions against the dev paragraphs plus the trial paragraphs (same source, no qrels) and the
    passages of the other long-text evaluation sets."""
    data = load_cmrc_retrieval(root)
    trial = RetrievalData([], [], [], [])
    _cmrc_paragraphs(root / "CMRC2018" / "cmrc2018_trial.json", trial, with_questions=False)
    data.add_distractors(trial.corpus, "cmrc2018_trial.json")
    for source, passages in eval_passages(root).items():
        data.add_distractors(passages, source)
    return data


def _kuake_qtr_rows(root: Path, dropped: SkipReport):
    """(query, title, grade 0-3) of KUAKE-QTR train + dev; empty queries or titles are counted in ``dropped``."""
    for name in ("KUAKE-QTR_train.json", "KUAKE-QTR_dev.json"):
        path = root / "KUAKE-QTR" / name
        rows = read_json(path)
        if not isinstance(rows, list):
            raise InputError(f"{path}: expected a JSON array of rows")
        for i, row in enumerate(rows):
            query, title, label = row.get("query"), row.get("title"), str(row.get("label", ""))
            if not isinstance(query, str) or not isinstance(title, str) or label not in ("0", "1", "2", "3"):
                raise InputError(f"{path} row {i + 1}: expected query, title and a label 0-3")
            if not query.strip() or not title.strip():
                dropped.add("empty query or title")
                continue
            yield query, title, int(label)


def load_kuake_qtr(root: Path) -> RetrievalData:
    """Medical search queries against every distinct page title of KUAKE-QTR train + dev, graded 0-3.

    Grades 1-3 are the gains (0: not relevant); a query none of whose titles has a grade above 0 has nothing
    to find and is dropped (counted)."""
    data = RetrievalData([], [], [], [])
    title_id: dict[str, str] = {}
    grades: dict[str, dict[str, int]] = {}
    for query, title, label in _kuake_qtr_rows(root, data.dropped):
        if title not in title_id:
            title_id[title] = f"t{len(title_id):05d}"
            data.corpus.append(title)
            data.doc_ids.append(title_id[title])
        rel = grades.setdefault(query, {})
        doc = title_id[title]
        if doc in rel:
            data.dropped.add("(query, title) pair listed twice")
        rel[doc] = max(rel.get(doc, 0), label)
    for query, rel in grades.items():
        positive = {d: g for d, g in rel.items() if g > 0}
        if not positive:
            data.dropped.add("query with no title graded above 0")
            continue
        data.queries.append(query)
        data.qrels.append(positive)
    return data


def load_kuake_qtr_reranking(root: Path) -> RerankingData:
    """Each KUAKE-QTR query with its own graded titles (as C-MTEB's T2Reranking: the task brings the candidates);
    relevant = grade 2 or 3 ("mostly" or "fully" answers the query). A query whose titles are all relevant or all
    not has nothing to rank and is dropped (counted)."""
    data = RerankingData([], [], [])
    grouped: dict[str, dict[str, int]] = {}
    for query, title, label in _kuake_qtr_rows(root, data.dropped):
        titles = grouped.setdefault(query, {})
        if title in titles:
            data.dropped.add("(query, title) pair listed twice")
        titles[title] = max(titles.get(title, 0), label)
    for query, titles in grouped.items():
        relevant = [1 if g >= 2 else 0 for g in titles.values()]
        if all(relevant) or not any(relevant):
            data.dropped.add("query whose titles are all relevant or all not")
            continue
        data.queries.append(query)
        data.candidates.append(list(titles))
        data.relevance.append(relevant)
    return data


def _lcsts_rows(path: Path) -> list[tuple[int, str, str]]:
    return [(no, parts[0], parts[1]) for no, parts in _tsv_fields(path, 2, "title<TAB>text")]


def load_lcsts_retrieval(root: Path) -> RetrievalData:
    """LCSTS val + test headlines against all their short texts; a headline's relevant texts are the ones it
    heads (repeated rows merged, counted)."""
    data = RetrievalData([], [], [], [])
    text_id: dict[str, str] = {}
    by_title: dict[str, dict[str, int]] = {}
    for name in ("val.tsv", "test.tsv"):
        for _no, title, text in _lcsts_rows(root / "LCSTS_CLGE" / name):
            if text not in text_id:
                text_id[text] = f"s{len(text_id):05d}"
                data.corpus.append(text)
                data.doc_ids.append(text_id[text])
            rel = by_title.setdefault(title, {})
            if text_id[text] in rel:
                data.dropped.add("repeated row merged")
            rel[text_id[text]] = 1
    data.queries, data.qrels = list(by_title), list(by_title.values())
    return data


LCSTS_CANDIDATES = 20


def load_lcsts_reranking(root: Path) -> RerankingData:
    """LCSTS test headlines, each with its own short text among the texts BM25 (jieba words) ranks highest for it
    over all val + test texts: ``LCSTS_CANDIDATES`` candidates a query, found without any model, so every model
    ranks the same lists and the negatives are hard lexical look-alikes. The gold text joins its list where BM25
    misses it (counted)."""
    from m3e.evaluation.lexical import bm25_rankings

    rows = [(t, x) for name in ("val.tsv", "test.tsv") for _no, t, x in _lcsts_rows(root / "LCSTS_CLGE" / name)]
    corpus = list(dict.fromkeys(x for _t, x in rows))
    tests = {}
    for _no, title, text in _lcsts_rows(root / "LCSTS_CLGE" / "test.tsv"):
        tests.setdefault(title, set()).add(text)
    data = RerankingData([], [], [])
    ids = [f"s{i:05d}" for i in range(len(corpus))]
    ranked = bm25_rankings(list(tests), corpus, ids, top=LCSTS_CANDIDATES)
    for (title, gold), found in zip(tests.items(), ranked, strict=True):
        cands = [corpus[int(i[1:])] for i in found]
        missing = [g for g in gold if g not in cands]
        if missing:
            data.dropped.add("gold text outside the BM25 list (added)", n=len(missing))
            cands = cands[:LCSTS_CANDIDATES - len(missing)] + missing
        data.queries.append(title)
        data.candidates.append(cands)
        data.relevance.append([1 if c in gold else 0 for c in cands])
    return data


def load_leetcode(root: Path) -> RetrievalData:
    """Chinese problem statements against the Python solutions of every problem. Solutions with exactly the
    same code (I/II variants) are one document relevant to each of their problems (merged, counted)."""
    path = root / "LeetCode_s2c" / "leetcode_zh_python.jsonl"
    data = RetrievalData([], [], [], [])
    code_id: dict[str, str] = {}
    for no, row in jsonl_rows(path):
        query, code = field_text(path, no, row, "query"), field_text(path, no, row, "code")
        if not query.strip() or not code.strip():
            raise InputError(f"{path}:{no}: empty query or code")
        if code in code_id:
            data.dropped.add("same code as another problem (merged)")
        else:
            code_id[code] = field_text(path, no, row, "id")
            data.corpus.append(code)
            data.doc_ids.append(code_id[code])
        data.queries.append(query)
        data.qrels.append({code_id[code]: 1})
    return data


def eval_passages(root: Path) -> dict[str, list[str]]:
    """Long Chinese passages of the evaluation-only sets, the default distractors of the hard retrieval tasks:
    texts every training recipe already keeps out (the test-overlap filter), so no model has trained on them."""
    out: dict[str, list[str]] = {}
    sohu = []
    for name in ("dd-test.jsonl", "dc-test.jsonl"):
        for _no, row in jsonl_rows(root / "SOHU" / name):
            sohu += [row.get("sentence1", ""), row.get("sentence2", "")]
    out["SOHU"] = sohu
    out["CSL abstracts"] = [abstract for _no, abstract, _title in _csl_columns(root / "CSL_benchmark" / "ts" /
                                                                               "test.tsv")]
    out["IFlyTek"] = [r.get("sentence", "") for _no, r in jsonl_rows(root / "FewCLUE_iflytek" / "test_public.json")]
    out["CSLDCP"] = [r.get("content", "") for _no, r in jsonl_rows(root / "FewCLUE_csldcp" / "test_public.json")]
    out["LCSTS val+test"] = [text for name in ("val.tsv", "test.tsv")
                             for _no, _title, text in _lcsts_rows(root / "LCSTS_CLGE" / name)]
    return out


def load_wmt(year: int):
    def load(root: Path) -> BitextData:
        path = root / "WMT_newstest_zh-en" / f"damo_mt_testsets_zh2en_news_wmt{year}.csv"
        data = BitextData([], [])
        for no, row in csv_rows(path):
            zh, en = field_text(path, no, row, "0"), field_text(path, no, row, "1")
            if not zh.strip() or not en.strip():
                data.dropped.add("empty side")
                continue
            data.sentences1.append(zh)
            data.sentences2.append(en)
        return data

    return load


STSB_MULTI = "STSB_multi_mt"
STSB_COLUMNS = ["sentence1", "sentence2", "similarity_score"]


def _stsb_rows(path: Path) -> list[tuple[int, str, str, float]]:
    out = []
    for no, row in csv_rows(path, columns=STSB_COLUMNS):
        a, b = field_text(path, no, row, "sentence1"), field_text(path, no, row, "sentence2")
        raw = field_text(path, no, row, "similarity_score")
        try:
            score = float(raw)
        except ValueError:
            raise InputError(f"{path}:{no}: similarity_score '{raw}' is not a number") from None
        out.append((no, a, b, score))
    return out


def load_stsb_multi(split: str, first: str, second: str):
    """STSb multi-MT: sentence1 in language ``first``, sentence2 in ``second``, the shared gold score. The
    language files are aligned row by row; a row whose scores disagree means they are not, and is an error."""

    def load(root: Path) -> PairData:
        path1 = root / STSB_MULTI / f"stsb-{first}-{split}.csv"
        path2 = root / STSB_MULTI / f"stsb-{second}-{split}.csv"
        rows1 = _stsb_rows(need(path1))
        rows2 = rows1 if path2 == path1 else _stsb_rows(need(path2))
        if len(rows1) != len(rows2):
            raise InputError(f"{path1} has {len(rows1)} rows and {path2} {len(rows2)}; the language files of "
                             "STSb multi-MT must be aligned row by row")
        data = PairData([], [], [])
        for (no, a, _, score), (_, _, b, score2) in zip(rows1, rows2, strict=True):
            if score != score2:
                raise InputError(f"{path1}:{no}: score {score} but {score2} on the same row of {path2}; the "
                                 "language files are not aligned")
            if not a.strip() or not b.strip():
                data.dropped.add("empty sentence")
                continue
            data.sentences1.append(a)
            data.sentences2.append(b)
            data.labels.append(score)
        return data

    return load


# --- registry ---------------------------------------------------------------------------------------------------

def _sts(name: str, rel: str, description: str, loader=load_tsv_pairs) -> Task:
    return Task(name, "STS", "s2s", description, MAIN_SCORES["STS"], lambda root: loader(root / rel), mteb_name=name)


def _cls(name, category, description, load, mteb_name=None, **params) -> Task:
    params = {"samples_per_label": 32, "n_experiments": 10, **params}
    return Task(name, "Classification", category, description, "accuracy", load, params=params, mteb_name=mteb_name)


def _clu(name, category, description, load, mteb_name=None) -> Task:
    return Task(name, "Clustering", category, description, "v_measure", load, mteb_name=mteb_name,
                params={"max_documents": 2048, "sample_size": 16_384, "n_samples": 10})


_STSB_NAMES = {"en": "English", "zh": "Chinese"}


def _stsb_multi(first: str, second: str, split: str = "test") -> Task:
    same = first == second
    language = first if same else "zh-en"
    name = "STSB-" + (first if same else f"{first}-{second}") + ("-dev" if split == "dev" else "")
    what = (f"{_STSB_NAMES[first]} STS Benchmark" if same else
            f"cross-lingual STS Benchmark, {_STSB_NAMES[first]} sentence1 vs {_STSB_NAMES[second]} sentence2 of "
            "the same row")
    if split == "dev":
        description = (f"VALIDATION ONLY (choose checkpoints and settings on it, never report it): {what}, "
                       "STSb multi-MT dev split (1,500 pairs), float gold 0-5, Spearman.")
    else:
        description = (f"{what}: STSb multi-MT test split (1,379 pairs; the Chinese side is DeepL's "
                       "translation), float gold 0-5, Spearman"
                       + ("; the same pairs as MTEB's STSBenchmark." if first == second == "en" else
                          "; not in C-MTEB (MTEB's STS17 has no zh-en pair)."))
    return Task(name, "STS", "s2s", description, MAIN_SCORES["STS"], load_stsb_multi(split, first, second),
                mteb_name="STSBenchmark" if (same and first == "en" and split == "test") else None,
                language=language, split="validation" if split == "dev" else "test")


_TASKS = [
    _sts("ATEC", "ATEC/ATEC.test.data", "Ant Financial question matching, binary labels scored by Spearman as "
         "in C-MTEB; senteval_cn test split (20,000 pairs; C-MTEB uses the same 20,000-pair test)."),
    _sts("BQ", "BQ/BQ.test.data", "Bank question matching, binary, Spearman (C-MTEB protocol), 10,000 test pairs."),
    _sts("LCQMC", "LCQMC/LCQMC.test.data", "Large-scale Chinese question matching, binary, Spearman, 12,500 test "
         "pairs."),
    _sts("PAWSX", "PAWSX/PAWSX.test.data", "PAWS-X zh paraphrase adversaries (word order), binary, Spearman, 2,000 "
         "test pairs."),
    _sts("STSB", "STS-B/STS-B.test.data", "STS-B translated to Chinese, scores 0-5 (rounded), Spearman, 1,361 test "
         "pairs (C-MTEB's STSB has 1,360)."),
    _stsb_multi("en", "en"),
    _stsb_multi("zh", "en"),
    _stsb_multi("en", "zh"),
    _sts("AFQMC", "AFQMC/dev.json", "Alipay question matching, CLUE dev split as in C-MTEB (4,316 pairs), labels are "
         "strings '0'/'1'; overlaps ATEC.", loader=lambda p: load_jsonl_pairs(p, {"0": 0.0, "1": 1.0})),
    _sts("SOHU-dd", "SOHU/dd-test.jsonl", "Sohu short document vs document, labels 0/3/5, Spearman (text2vec "
         "protocol), 500 pairs; not in C-MTEB.", loader=load_jsonl_pairs),
    _sts("SOHU-dc", "SOHU/dc-test.jsonl", "Sohu short document vs long document (~1,000 chars, truncated at the "
         "model's max length), labels 0/3/5, Spearman, 500 pairs; not in C-MTEB.", loader=load_jsonl_pairs),
    Task("Ocnli", "PairClassification", "s2s", "Original Chinese NLI dev split (C-MTEB protocol): entailment=1, "
         "contradiction=0, neutral and '-' dropped; main score max accuracy over similarity functions.",
         "max_accuracy", lambda root: load_jsonl_pairs(root / "OCNLI" / "dev.json", NLI), mteb_name="Ocnli"),
    Task("Cmnli", "PairClassification", "s2s", "Chinese MNLI dev split (C-MTEB protocol, 12,241 rows before "
         "dropping neutral); main score max accuracy over similarity functions.",
         "max_accuracy", lambda root: load_tsv_pairs(root / "CMNLI" / "dev.txt", NLI), mteb_name="Cmnli"),
    _cls("TNews", "s2s", "Toutiao news titles, 15 classes. Test: the CLUE dev split C-MTEB evaluates (10,000). "
         "Training pool (32 per label, 10 experiments): FewCLUE's public TNEWS test (2,010, minus 73 titles shared "
         "with dev); C-MTEB draws from CLUE train, which we do not have.", load_tnews, "TNews"),
    _cls("IFlyTek", "p2p", "App descriptions, long texts, 119-class label set. FewCLUE public test (1,749), labels "
         "with one row dropped, fixed-seed stratified 50/50 train pool/test split; C-MTEB uses the CLUE dev split "
         "(2,599), so numbers are not directly comparable. 5 experiments as in C-MTEB.",
         _split(lambda r: _jsonl_labelled(r / "FewCLUE_iflytek" / "test_public.json", "sentence", "label_des", 2),
                0.5), "IFlyTek", n_experiments=5),
    _cls("EPRSTMT", "s2s", "E-commerce review sentiment (FewCLUE, 610 rows, balanced), fixed-seed stratified 50/50 "
         "split; the closest public stand-in for C-MTEB's JDReview.",
         _split(lambda r: _jsonl_labelled(r / "FewCLUE_eprstmt" / "test_public.json", "sentence", "label"), 0.5)),
    _cls("CSLDCP", "p2p", "Scientific abstracts, 67 disciplines (FewCLUE public test, 1,784 rows), labels with one "
         "row dropped, fixed-seed stratified 50/50 split; not in C-MTEB.",
         _split(lambda r: _jsonl_labelled(r / "FewCLUE_csldcp" / "test_public.json", "content", "label", 2), 0.5)),
    _cls("ChnSentiCorp", "s2s", "Hotel/book/electronics review sentiment, the labelled dev split (1,200), "
         "fixed-seed stratified 50/50 split; not in C-MTEB.", _split(load_chnsenticorp, 0.5)),
    _cls("Waimai", "s2s", "Food-delivery review sentiment: the whole corpus (11,987; duplicates dropped), a "
         "fixed-seed stratified 1,000-row test set as C-MTEB samples one (not the same rows); the rest is the "
         "training pool.", _split(load_waimai, 1000), "Waimai"),
    _cls("OnlineShopping", "s2s", "E-commerce review sentiment over 10 product categories (62,774 rows; empty and "
         "duplicate reviews dropped), fixed-seed stratified 1,000-row test set as C-MTEB samples one (not the same "
         "rows); the rest is the training pool.", _split(load_online_shopping, 1000), "OnlineShopping"),
    _clu("CLSClusteringS2S", "s2s", "CSL paper titles into 13 categories; the 1,000-paper CSL benchmark test "
         "stands in for C-MTEB's full CSL set; MTEB v2 protocol (10 bootstrap samples).", load_csl_titles,
         "CLSClusteringS2S.v2"),
    _clu("CLSClusteringP2P", "p2p", "CSL title + abstract into 13 categories (1,000-paper CSL test; C-MTEB uses the "
         "full CSL set).", load_csl_title_abstract, "CLSClusteringP2P.v2"),
    _clu("CSLDisciplineClustering", "p2p", "CSL abstracts into 67 disciplines (1,000-paper CSL test); not in "
         "C-MTEB.", load_csl_disciplines),
    Task("CSLRetrieval", "Retrieval", "s2p", "CSL title -> its abstract among 1,000 abstracts (CSL benchmark ts "
         "test); query prompt on titles, passage prompt on abstracts; not in C-MTEB.", "ndcg_at_10",
         load_csl_retrieval),
    Task("CMRC2018Retrieval", "Retrieval", "s2p", "CMRC 2018 dev: 3,219 questions -> the paragraph they were "
         "written on, among 848 Wikipedia paragraphs; lexical overlap is high; not in C-MTEB.", "ndcg_at_10",
         load_cmrc_retrieval),
    Task("CMRC2018RetrievalHard", "Retrieval", "s2p", "CMRC 2018 dev questions (3,219) -> their paragraph among "
         "the 848 dev + 256 trial Wikipedia paragraphs and the long passages of the other evaluation-only sets "
         "(SOHU, CSL abstracts, IFlyTek, CSLDCP, LCSTS val/test) as distractors; not in C-MTEB.", "ndcg_at_10",
         load_cmrc_retrieval_hard),
    Task("MedicalQTRRetrieval", "Retrieval", "s2p", "KUAKE-QTR (CBLUE) train + dev: medical search queries -> "
         "every distinct page title (26,751), graded relevance 1-3 as nDCG gains (0 not relevant); queries whose "
         "titles are all graded 0 dropped; not in C-MTEB.", "ndcg_at_10", load_kuake_qtr),
    Task("LCSTSRetrieval", "Retrieval", "s2p", "LCSTS (CLGE packaging) val + test: Weibo news headlines -> their "
         "short text among all 1,997 val/test texts; not in C-MTEB.", "ndcg_at_10", load_lcsts_retrieval),
    Task("MedicalQTRReranking", "Reranking", "s2p", "KUAKE-QTR (CBLUE) train + dev: each medical search query "
         "ranks its own graded page titles (relevant = grade 2-3); queries whose titles are all relevant or all not "
         "dropped; MAP over each query's candidates as C-MTEB's T2Reranking; not in C-MTEB.", "map_at_1000",
         load_kuake_qtr_reranking),
    Task("LCSTSReranking", "Reranking", "s2p", "LCSTS (CLGE packaging) test: each headline ranks its short text "
         f"among the {LCSTS_CANDIDATES} val/test texts BM25 (jieba) ranks highest for it (model-free, hard lexical "
         "negatives); not in C-MTEB.", "map_at_1000", load_lcsts_reranking),
    Task("LeetCodeRetrieval", "Retrieval", "s2c", "LeetCode (doocs/leetcode, CC BY-SA 4.0): Chinese problem "
         "statement -> its Python solution among all 3,455 distinct solutions; query prompt on statements, "
         "passage prompt on code.", "ndcg_at_10", load_leetcode),
    Task("WMT19BitextMining", "BitextMining", "bitext", "WMT newstest2019 zh-en (ModelScope packaging, 2,001 pairs): "
         "each Chinese sentence finds its English reference by nearest cosine; not in C-MTEB.", "f1", load_wmt(19),
         language="zh-en"),
    Task("WMT20BitextMining", "BitextMining", "bitext", "WMT newstest2020 zh-en (1,418 pairs, some multi-sentence); "
         "not in C-MTEB.", "f1", load_wmt(20), language="zh-en"),
    *(_stsb_multi(a, b, "dev") for a, b in (("zh", "zh"), ("en", "en"), ("zh", "en"), ("en", "zh"))),
]

BUILTIN_TASKS: dict[str, Task] = {t.name: t for t in _TASKS}

# Files of the data folder whose role is EVALUATION but that no built-in task reads (yet): training never uses
# them and the test-overlap filter removes their texts from every training source all the same (the owner checks
# models on sets we never see; these may be among them). Keys as a recipe's ``filter_files``.
HELD_BACK_FILES: tuple[dict, ...] = (
    {"path": "WMT_newstest_zh-en/damo_mt_testsets_zh2en_news_wmt18.csv", "format": "csv"},  # newstest2018 zh-en
    {"path": "STS-B/STS-B.valid.data", "format": "tsv", "columns": ["sentence1", "sentence2", "label"]},
)


def select_tasks(names: list[str] | None = None, category: str | None = None,
                 task_type: str | None = None, split: str = "test", language: str | None = None) -> list[Task]:
    """Built-in tasks by name (case-insensitive, any split), or the tasks of ``split`` by category, type and
    language; every task of the split when none is given."""
    if names:  # a split's name stands for its tasks (`eval_tasks: [validation]` in a recipe)
        lookup = {n.lower(): [t] for n, t in BUILTIN_TASKS.items()}
        lookup.update({s: [t for t in BUILTIN_TASKS.values() if t.split == s] for s in SPLITS})
        unknown = [n for n in names if n.lower() not in lookup]
        if unknown:
            raise InputError(f"unknown task(s) {', '.join(unknown)}; known tasks: {', '.join(BUILTIN_TASKS)} "
                             f"(or a split: {', '.join(SPLITS)})")
        return list({t.name: t for n in names for t in lookup[n.lower()]}.values())
    if split not in SPLITS:
        raise InputError(f"unknown split '{split}'; use one of {', '.join(SPLITS)}")
    chosen = [t for t in BUILTIN_TASKS.values() if t.split == split]
    if category:
        if category not in CATEGORIES:
            raise InputError(f"unknown category '{category}'; use one of {', '.join(CATEGORIES)}")
        chosen = [t for t in chosen if t.category == category]
    if task_type:
        kind = task_type_named(task_type).name
        chosen = [t for t in chosen if t.type == kind]
    if language:
        if language not in LANGUAGES:
            raise InputError(f"unknown language '{language}'; use one of {', '.join(LANGUAGES)}")
        chosen = [t for t in chosen if t.language == language]
    if not chosen:
        raise InputError(f"no built-in {split} task matches category={category} type={task_type} "
                         f"language={language}")
    return chosen


def task_language(name: str) -> str:
    """The language of a built-in task (results written before tasks had one carry none); "zh" otherwise."""
    task = BUILTIN_TASKS.get(name)
    return task.language if task is not None else "zh"
