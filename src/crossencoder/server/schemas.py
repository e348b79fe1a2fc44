"""Request and response bodies: Hugging Face TEI, Cohere v1/v2 (also Jina's shape), infinity and our ``/predict``.

Requests ignore fields they do not use (clients send extras such as Cohere's ``max_tokens_per_doc`` or
``priority``), so unchanged client code keeps working; fields they do use are type-checked.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

# Deeper document objects are refused up front: echoing them back would fail in JSON serialization after scoring.
MAX_DOCUMENT_DEPTH = 32


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ErrorResponse(BaseModel):
    """Body of every error answer."""

    error: str = Field(description="What went wrong, for humans.")
    error_type: str = Field(description="Machine-readable kind: validation, malformed_json, payload_too_large, "
                                        "unsupported_media_type, unauthorized, overloaded, timeout, unavailable, "
                                        "not_found, non_finite_scores, internal.")
    detail: str = Field(description="The same text as `error`, under the name FastAPI-based servers (Jina, "
                                    "infinity) use and their clients read.")


# ---------------------------------------------------------------------------------------------- TEI
class TEIRerankRequest(_Request):
    """``POST /rerank``: Hugging Face text-embeddings-inference's schema."""

    query: str = Field(min_length=1, description="The query.")
    texts: list[str] = Field(min_length=1, description="Passages to rank.")
    raw_scores: bool = Field(False, description="Return raw logits instead of the model's activation (sigmoid).")
    return_text: bool = Field(False, description="Add each passage's text to its result.")
    truncate: bool | None = Field(None, description="Accepted for compatibility: over-long pairs are always "
                                                    "truncated to the model's max_length (passage cut).")
    truncation_direction: Literal["Right", "right"] = Field(
        "Right", description="Only 'Right' (cut the end of the passage) is supported.")


class TEIRerankResult(BaseModel):
    index: int = Field(description="Position of the passage in `texts`.")
    score: float
    text: str | None = None


# ---------------------------------------------------------------------------------------------- Cohere / Jina
class CohereRerankRequest(_Request):
    """``POST /v1/rerank`` and ``/v2/rerank``: Cohere's schema (Jina's client sends the same shape)."""

    model: str | None = Field(None, description="Accepted and ignored: the server serves one model.")
    query: str = Field(min_length=1, description="The query.")
    documents: list[Any] = Field(
        min_length=1, description="Strings, or objects with a string `text` field (or the fields named in "
                                  "`rank_fields`); objects are returned unchanged as `document`.")
    top_n: int | None = Field(None, ge=1, description="Return only the best `top_n` results (default: all).")
    return_documents: bool = Field(False, description="Add each document to its result as `document` "
                                                      "(null means false).")
    rank_fields: list[str] | None = Field(
        None, min_length=1, description="Cohere v1: object fields to rank on, joined as 'field: value' lines.")

    @field_validator("return_documents", mode="before")
    @classmethod
    def _null_is_false(cls, value: Any) -> Any:
        return False if value is None else value

    @model_validator(mode="after")
    def _check_documents(self) -> CohereRerankRequest:
        fields = self.rank_fields or ["text"]
        for i, doc in enumerate(self.documents):
            if isinstance(doc, str):
                continue
            if not isinstance(doc, dict):
                raise ValueError(f"documents[{i}] must be a string or an object with a 'text' string, "
                                 f"got {_json_type(doc)}")
            for name in fields:
                if not isinstance(doc.get(name), str):
                    raise ValueError(f"documents[{i}] needs a string field {name!r}")
            if _depth(doc) > MAX_DOCUMENT_DEPTH:
                raise ValueError(f"documents[{i}] nests deeper than {MAX_DOCUMENT_DEPTH} levels")
            try:  # JSON allows escaped lone surrogates ("\ud800"), which no UTF-8 answer can echo back
                json.dumps(doc, ensure_ascii=False, allow_nan=False).encode()
            except UnicodeEncodeError:
                raise ValueError(f"documents[{i}] is not valid Unicode: it holds a lone surrogate") from None
            except ValueError:
                # Python's parser takes NaN / Infinity, which are not JSON: echoed back, they would turn into null.
                raise ValueError(f"documents[{i}] holds NaN or Infinity, which are not JSON numbers") from None
        return self

    def texts(self) -> list[str]:
        """The text to score of each document."""
        if not self.rank_fields:
            return [d if isinstance(d, str) else d["text"] for d in self.documents]
        return [d if isinstance(d, str) else "\n".join(f"{k}: {d[k]}" for k in self.rank_fields)
                for d in self.documents]

    def document(self, index: int) -> dict[str, Any]:
        """The document of a result: the object as sent, or ``{"text": ...}`` for a string."""
        doc = self.documents[index]
        return doc if isinstance(doc, dict) else {"text": doc}


class InfinityRerankRequest(CohereRerankRequest):
    """``POST /rerank`` with ``documents``: infinity's schema (Cohere's body plus ``raw_scores``)."""

    raw_scores: bool = Field(False, description="Return raw logits instead of the model's activation.")


def _rerank_shape(payload: Any) -> str:
    # TEI clients post `texts`; infinity's clients (LangChain, litellm) post `documents` to the same path.
    if isinstance(payload, dict) and "documents" in payload and "texts" not in payload:
        return "infinity"
    return "tei"


# ``POST /rerank`` body: TEI's schema, or infinity's when the request has `documents` instead of `texts`. The tag
# picks one model, so a bad request is reported against the schema it was meant for.
RerankRequest = Annotated[
    Union[Annotated[TEIRerankRequest, Tag("tei")], Annotated[InfinityRerankRequest, Tag("infinity")]],
    Discriminator(_rerank_shape),
]
# The tags show up in validation error locations; they are not fields.
RERANK_TAGS = ("tei", "infinity")


class CohereRerankResult(BaseModel):
    index: int = Field(description="Position of the document in `documents`.")
    relevance_score: float
    document: dict[str, Any] | None = None


class ApiVersion(BaseModel):
    version: str


class BilledUnits(BaseModel):
    search_units: int


class CohereMeta(BaseModel):
    api_version: ApiVersion
    billed_units: BilledUnits


class Usage(BaseModel):
    """Tokens the request fed the model (query and document of every pair, special tokens included)."""

    prompt_tokens: int
    total_tokens: int


class CohereRerankResponse(BaseModel):
    id: str = Field(description="A fresh id per request.")
    results: list[CohereRerankResult] = Field(description="Best first.")
    meta: CohereMeta
    model: str = Field(description="The served model's name (Jina's response field).")
    usage: Usage = Field(description="Jina's response field.")


class InfinityRerankResult(BaseModel):
    index: int = Field(description="Position of the document in `documents`.")
    relevance_score: float
    document: Any = Field(None, description="The document as sent (a string, or an object).")


class InfinityRerankResponse(BaseModel):
    object: Literal["rerank"] = "rerank"
    id: str = Field(description="A fresh id per request.")
    created: int = Field(description="Unix time of the answer.")
    model: str = Field(description="The served model's name.")
    results: list[InfinityRerankResult] = Field(description="Best first.")
    usage: Usage


# ---------------------------------------------------------------------------------------------- predict
class PredictRequest(_Request):
    """``POST /predict``: score sentence pairs, or classify them with a multi-label model.

    Send ``pairs`` (this server's shape) or ``inputs`` (Hugging Face TEI's shape: one pair or a batch of pairs);
    the answer comes back in the shape of the request.
    """

    pairs: list[tuple[str, str]] | None = Field(None, min_length=1, description="`[text_a, text_b]` pairs.")
    inputs: Any = Field(None, description="TEI: one pair `[a, b]` or a batch `[[a, b], ...]` (a cross-encoder "
                                          "scores pairs, so TEI's single-text inputs are refused).")
    raw_scores: bool = Field(False, description="Raw logits instead of scores/probabilities.")
    symmetric: bool = Field(False, description="Score each pair in both orders and average the logits "
                                               "(similarity, paraphrase; not NLI). Costs twice the compute.")
    truncate: bool | None = Field(None, description="TEI: accepted; over-long pairs are always truncated.")

    @model_validator(mode="after")
    def _check_inputs(self) -> PredictRequest:
        if (self.pairs is None) == (self.inputs is None):
            raise ValueError("send either `pairs` or TEI's `inputs`, not both and not neither")
        if self.inputs is not None:
            if self.inputs == []:
                raise ValueError("`inputs` cannot be empty")
            for i, pair in enumerate(self._tei_items()):
                if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(t, str) for t in pair)):
                    where = f"inputs[{i}]" if self.is_tei_batch else "inputs"
                    raise ValueError(f"{where} must be a pair of strings [text_a, text_b]: a cross-encoder scores "
                                     "pairs, not single texts")
        return self

    @property
    def is_tei_batch(self) -> bool:
        """TEI's ``inputs`` holds a list of pairs rather than one pair (the answer is then a list of lists)."""
        return isinstance(self.inputs, list) and any(isinstance(x, list) for x in self.inputs)

    def _tei_items(self) -> list[Any]:
        return self.inputs if self.is_tei_batch else [self.inputs]

    def text_name(self, index: int) -> str:
        """Where text ``index`` of the flattened pairs sits in the request, e.g. ``pairs[3][1]``."""
        pair, side = divmod(index, 2)
        if self.inputs is not None and not self.is_tei_batch:
            return f"inputs[{side}]"
        return f"{'pairs' if self.pairs is not None else 'inputs'}[{pair}][{side}]"

    def pair_name(self, index: int) -> str:
        """Where pair ``index`` sits in the request: ``pairs[3]``, ``inputs[3]``, or ``inputs`` for TEI's one pair."""
        if self.inputs is not None and not self.is_tei_batch:
            return "inputs"
        return f"{'pairs' if self.pairs is not None else 'inputs'}[{index}]"

    def pair_list(self) -> list[tuple[str, str]]:
        """The pairs to score, from whichever field was sent."""
        if self.pairs is not None:
            return list(self.pairs)
        return [(a, b) for a, b in self._tei_items()]


class TEIPrediction(BaseModel):
    score: float
    label: str


class PredictResult(BaseModel):
    score: float | None = Field(None, description="1-label models: the pair's score.")
    label: str | None = Field(None, description="Classifiers: the most likely label.")
    scores: dict[str, float] | None = Field(
        None, description="Classifiers: probability (softmax) of each label, or its logit with raw_scores.")


class PredictResponse(BaseModel):
    results: list[PredictResult] = Field(description="One result per pair, in input order.")


# ---------------------------------------------------------------------------------------------- info
class InfoResponse(BaseModel):
    model: str
    model_path: str | None
    num_labels: int
    labels: list[str]
    max_length: int
    backend: str
    score_activation: str
    device: str
    limits: dict[str, Any]


def _depth(value: Any) -> int:
    """Nesting depth of a JSON value (a scalar is 0), iteratively so a deep value cannot exhaust the stack."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_DOCUMENT_DEPTH:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _json_type(value: Any) -> str:
    names = {bool: "boolean", int: "number", float: "number", list: "array", type(None): "null"}
    return names.get(type(value), type(value).__name__)
