"""The `m3e demo` tour: a few sentences, a similarity table and a search over a small sample corpus."""

from __future__ import annotations

import json
from importlib import resources

SENTENCES = [
    "今天天气很好，适合出去散步。",
    "今天阳光明媚，很适合户外活动。",
    "The weather is lovely today, perfect for a walk.",
    "我的笔记本电脑开不了机了。",
    "My laptop won't turn on.",
]

QUERIES = ["怎么退货？", "How do embeddings help search?", "大熊猫吃什么"]


def corpus() -> list[dict]:
    """The sample corpus written for this project (short Chinese and English passages)."""
    text = resources.files("m3e.demo").joinpath("corpus.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]
