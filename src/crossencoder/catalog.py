"""A small catalog of well-known pretrained cross-encoders, addressable by short name.

Figures are the ones published on the models' cards / the sentence-transformers documentation
(``None`` where no figure is published). Speeds and scores of *this* library are in docs/benchmarks.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class CatalogEntry:
    """One pretrained cross-encoder.

    Attributes:
        name: Short name accepted wherever a model is (``--model ms-marco-MiniLM-L6-v2``).
        hub_id: Hugging Face Hub id.
        task: ``rerank``, ``similarity``, ``nli`` or ``duplicate``.
        num_labels: Size of the head.
        activation: Default activation applied by ``predict`` (``Identity`` = raw logits).
        max_length: Maximum sequence length in tokens.
        languages: Languages it was trained for.
        published: Published figures, metric name -> value.
    """

    name: str
    hub_id: str
    task: str
    num_labels: int
    activation: str
    max_length: int
    languages: str = "en"
    published: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


_MSMARCO = "NDCG@10 TREC DL19", "MRR@10 MS MARCO dev"

CATALOG: dict[str, CatalogEntry] = {
    e.name: e
    for e in [
        CatalogEntry("ms-marco-TinyBERT-L2-v2", "cross-encoder/ms-marco-TinyBERT-L2-v2", "rerank", 1, "Identity", 512,
                     published=dict(zip(_MSMARCO, (69.84, 32.56)))),
        CatalogEntry("ms-marco-MiniLM-L2-v2", "cross-encoder/ms-marco-MiniLM-L2-v2", "rerank", 1, "Identity", 512,
                     published=dict(zip(_MSMARCO, (71.01, 34.85)))),
        CatalogEntry("ms-marco-MiniLM-L4-v2", "cross-encoder/ms-marco-MiniLM-L4-v2", "rerank", 1, "Identity", 512,
                     published=dict(zip(_MSMARCO, (73.04, 37.70)))),
        CatalogEntry("ms-marco-MiniLM-L6-v2", "cross-encoder/ms-marco-MiniLM-L6-v2", "rerank", 1, "Identity", 512,
                     published=dict(zip(_MSMARCO, (74.30, 39.01)))),
        CatalogEntry("ms-marco-MiniLM-L12-v2", "cross-encoder/ms-marco-MiniLM-L12-v2", "rerank", 1, "Identity", 512,
                     published=dict(zip(_MSMARCO, (74.31, 39.02)))),
        CatalogEntry("stsb-TinyBERT-L4", "cross-encoder/stsb-TinyBERT-L4", "similarity", 1, "Sigmoid", 512,
                     published={"Spearman STSb test": 85.50}),
        CatalogEntry("stsb-distilroberta-base", "cross-encoder/stsb-distilroberta-base", "similarity", 1, "Sigmoid", 512,
                     published={"Spearman STSb test": 87.92}),
        CatalogEntry("stsb-roberta-base", "cross-encoder/stsb-roberta-base", "similarity", 1, "Sigmoid", 512,
                     published={"Spearman STSb test": 90.17}),
        CatalogEntry("nli-deberta-v3-base", "cross-encoder/nli-deberta-v3-base", "nli", 3, "Identity", 512,
                     published={"accuracy SNLI test": 92.38, "accuracy MNLI mismatched": 90.04}),
        CatalogEntry("nli-distilroberta-base", "cross-encoder/nli-distilroberta-base", "nli", 3, "Identity", 512),
        CatalogEntry("quora-distilroberta-base", "cross-encoder/quora-distilroberta-base", "duplicate", 1, "Sigmoid", 512),
        CatalogEntry("mmarco-mMiniLMv2-L12-H384-v1", "cross-encoder/mmarco-mMiniLMv2-L12-H384-v1", "rerank", 1,
                     "Identity", 512, languages="multilingual (mMARCO, 14 languages)"),
    ]
}


def resolve_name(name_or_path: str) -> str:
    """Map a catalog short name to its Hub id; anything else is returned unchanged."""
    entry = CATALOG.get(name_or_path)
    return entry.hub_id if entry is not None else name_or_path
