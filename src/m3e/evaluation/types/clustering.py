"""Clustering: MiniBatchKMeans with k = number of labels on bootstrap samples; mean V-measure (MTEB v2)."""

from __future__ import annotations

import random

import numpy as np

from m3e.evaluation.types.base import Encode, TaskRefused, TaskType
from m3e.evaluation.types.classification import LabelledData, labelled_from_records


def clustering_scores(embeddings: np.ndarray, labels, *, max_documents: int | None = 2048,
                      sample_size: int = 16_384, n_samples: int = 10, batch_size: int = 512,
                      seed: int = 42) -> dict[str, float]:
    """MTEB's (v2, "fast") clustering: MiniBatchKMeans with k = #labels on bootstrap samples; mean V-measure."""
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.metrics.cluster import adjusted_mutual_info_score, v_measure_score

    rng = random.Random(seed)
    embeddings = np.asarray(embeddings)
    labels = np.asarray(labels)
    if max_documents is not None:
        keep = rng.sample(range(len(labels)), k=min(len(labels), max_documents))
        embeddings, labels = embeddings[keep], labels[keep]
    model = MiniBatchKMeans(n_clusters=np.unique(labels).size, batch_size=batch_size, init="k-means++", n_init=1,
                            random_state=seed)
    v, ami = [], []
    for _ in range(n_samples):
        pick = rng.choices(range(len(labels)), k=sample_size)
        assigned = model.fit_predict(embeddings[pick])
        v.append(float(v_measure_score(labels[pick], assigned)))
        ami.append(float(adjusted_mutual_info_score(labels[pick], assigned)))
    return {"v_measure": float(np.mean(v)), "v_measure_std": float(np.std(v)), "ami": float(np.mean(ami)),
            "ami_std": float(np.std(ami))}


def score(data: LabelledData, encode: Encode, params: dict) -> dict[str, float]:
    if len(set(data.labels)) < 2:
        raise TaskRefused(f"needs at least two clusters, found {sorted(set(data.labels))}")
    kw = {k: params[k] for k in ("max_documents", "sample_size", "n_samples", "seed") if k in params}
    return clustering_scores(encode(data.texts, "text"), data.labels, **kw)


TYPE = TaskType(
    name="Clustering", main_score="v_measure", prompts={"text": "query"}, category="s2s", score=score,
    fields="text, cluster (or text, label with --task-type Clustering)",
    detect=lambda keys, records: {"text", "cluster"} <= keys,
    from_records=lambda path, records: labelled_from_records(
        path, records, "cluster" if "cluster" in records[0][1] else "label", with_split=False),
)
