"""The ``CrossEncoder``: load a pair model, predict scores or classes, rank documents, save."""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import BatchEncoding

from crossencoder.backends import BACKENDS, Backend, TorchBackend, resolve_device, resolve_dtype
from crossencoder.backends.torch_backend import load_torch_model
from crossencoder.model.activation import (
    LEGACY_KEY,
    ST_CONFIG_KEY,
    default_activation,
    fullname,
    resolve_activation,
    stored_activation_path,
)
from crossencoder.model.batching import pad_batch, token_budget_batches
from crossencoder.model.ranking import best_first
from crossencoder.model.inputs import (
    average_orders,
    is_single_pair,
    validate_documents,
    validate_pairs,
    with_swapped,
)
from crossencoder.model.windows import AGGREGATIONS, Aggregation, aggregate, split_into_windows
from crossencoder.model.loading import (
    is_sentence_transformers_cross_encoder,
    load_config,
    load_tokenizer,
    read_sentence_transformers_config,
    resolve_model,
)
from crossencoder.model.prompts import (
    MODULES_JSON,
    SENTENCE_BERT_CONFIG,
    merge_prompts,
    resolve_prompt,
    with_prompt,
)

logger = logging.getLogger(__name__)

# Key of crossencoder's own settings in config.json (score calibration).
CONFIG_KEY = "crossencoder"
# Default padded tokens per forward pass. On CPU, small batches keep activations in cache (benchmarks/speed.py);
# on GPU, large batches fill the device.
CPU_BATCH_TOKENS = 2048
GPU_BATCH_TOKENS = 65536
# Show a progress bar by default once an input fills this many batches of batch_size.
_PROGRESS_MIN_BATCHES = 20
# Pairs tokenized at a time by _score (memory bound; see there).
_ENCODE_CHUNK = 8192


class CrossEncoder:
    """A cross-encoder: reads a pair of texts together and outputs a score (or one logit per class).

    Drop-in for ``sentence_transformers.CrossEncoder``: the same model folders, the same scores, the same
    ``predict`` / ``rank`` API. Loads anything ``AutoModelForSequenceClassification`` loads: a local folder, a
    Hugging Face Hub id (using the Hub cache, ``revision`` and offline mode ``HF_HUB_OFFLINE=1``), or a short name
    from :data:`crossencoder.catalog.CATALOG`.

    Args:
        model_name_or_path: Local folder, Hub id (``"cross-encoder/ms-marco-MiniLM-L6-v2"``) or catalog short name.
        num_labels: Size of the classification head. Set it to start from a plain encoder (a fresh head is
            initialised) or to override the folder's value.
        max_length: Maximum tokens per pair; longer pairs are truncated: the passage is cut and the query kept
            whole when it fits (sentence-transformers' ``longest_first`` would also cut a query longer than the
            remaining passage; for shorter queries both give the same tokens). Defaults to the tokenizer's
            ``model_max_length``, capped at the model's position embeddings.
        activation_fn: Applied to the logits by ``predict``. Default: what the folder declares
            (sentence-transformers conventions), else Sigmoid for 1 label and identity otherwise.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``; None picks cuda, then mps, then cpu. The onnx
            backend runs on the CPU unless onnxruntime has the device's provider (onnxruntime-gpu for CUDA);
            ``device`` then reports where it runs.
        dtype: ``"float32"`` (default), ``"float16"`` or ``"bfloat16"`` (GPU precisions). Without it, the torch
            backend runs in the precision ``model_kwargs`` asks for (``{"torch_dtype": torch.float16}``), if any.
        backend: ``"torch"`` or ``"onnx"`` (onnxruntime; see ``backend_kwargs``).
        backend_kwargs: Backend options, e.g. ``{"quantize": "int8", "num_threads": 2}`` for onnx.
        max_batch_tokens: Default token budget of a batch (padded tokens); None = 2048 on CPU (small batches
            stay in cache: about 10% more pairs/s than 8192 on long pairs), 65536 on GPU.
        revision: Hub branch, tag or commit.
        cache_folder: Hub cache directory (default: the Hugging Face cache).
        local_files_only: Never contact the Hub; use the cache only.
        trust_remote_code: Allow model code and activation paths from the model folder. Off by default.
        token: Hub token for private models.
        model_kwargs, tokenizer_kwargs, config_kwargs: Passed to the transformers ``from_pretrained`` calls.
        prompts: Named prompts, e.g. ``{"query": "query: "}``; ``predict``/``rank`` prepend the chosen one to the
            first text of every pair (the query). They add to a sentence-transformers folder's saved prompts and
            win over those of the same name.
        default_prompt_name: The prompt applied when a call names none (overrides the folder's; None keeps it).
            A call turns it off with ``prompt=""``.
        legacy_kwargs: sentence-transformers' other names, so its calls run unchanged: ``processor_kwargs``
            (its name for ``tokenizer_kwargs`` since 6.0), and with a DeprecationWarning its older names
            ``model_name`` (= ``model_name_or_path``), ``default_activation_function`` (= ``activation_fn``),
            ``automodel_args`` (= ``model_kwargs``), ``tokenizer_args``, ``config_args``, ``cache_dir``
            (= ``cache_folder``) and ``classifier_dropout`` (= ``config_kwargs={"classifier_dropout": ...}``).

    Raises:
        ModelNotFoundError: the model is neither a local folder nor loadable from the Hub / its cache; the
            message says what was tried and how to fix it.
        ValueError: an invalid ``device``, ``dtype``, ``backend`` or ``backend_kwargs``, a ``max_length`` beyond
            the model's position embeddings, or a ``default_prompt_name`` that is not one of the prompts.

    Example:
        >>> model = CrossEncoder("cross-encoder/ms-marco-MiniLM-L6-v2")
        >>> model.predict([("How many people live in Berlin?", "Berlin has 3.5 million inhabitants.")])
        >>> model.rank("How many people live in Berlin?", ["Berlin has 3.5 million inhabitants.", "Paris is in France."])
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike | None = None,
        num_labels: int | None = None,
        max_length: int | None = None,
        activation_fn: Callable | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        backend: Literal["torch", "onnx"] = "torch",
        backend_kwargs: dict[str, Any] | None = None,
        max_batch_tokens: int | None = None,
        revision: str | None = None,
        cache_folder: str | None = None,
        local_files_only: bool = False,
        trust_remote_code: bool = False,
        token: bool | str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        config_kwargs: dict[str, Any] | None = None,
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        **legacy_kwargs: Any,
    ) -> None:
        legacy = _legacy_arguments(legacy_kwargs)
        model_name_or_path = legacy.get("model_name_or_path", model_name_or_path)
        if model_name_or_path is None:
            raise TypeError("CrossEncoder() needs a model: pass a local folder, a Hub id or a catalog name.")
        activation_fn = legacy.get("activation_fn", activation_fn)
        model_kwargs = legacy.get("model_kwargs", model_kwargs)
        tokenizer_kwargs = legacy.get("tokenizer_kwargs", tokenizer_kwargs)
        config_kwargs = legacy.get("config_kwargs", config_kwargs)
        cache_folder = legacy.get("cache_folder", cache_folder)
        if "classifier_dropout" in legacy:
            config_kwargs = {**(config_kwargs or {}), "classifier_dropout": legacy["classifier_dropout"]}
        if backend not in BACKENDS:
            raise ValueError(f"Unknown backend {backend!r}: use one of {', '.join(BACKENDS)}.")
        if num_labels is not None and num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {num_labels}.")
        source = resolve_model(model_name_or_path)
        self.model_name_or_path = os.fspath(model_name_or_path)
        self.trust_remote_code = trust_remote_code
        self.revision = revision
        self.cache_folder = cache_folder
        hub_kwargs: dict[str, Any] = {
            "revision": revision,
            "cache_dir": cache_folder,
            "local_files_only": local_files_only,
            "trust_remote_code": trust_remote_code,
            "token": token,
        }
        config_kwargs = dict(config_kwargs or {})
        model_kwargs = dict(model_kwargs or {})
        if num_labels is not None:
            config_kwargs["num_labels"] = num_labels
            # Asking for a head size the folder does not have means "start a fresh head", not a crash.
            model_kwargs.setdefault("ignore_mismatched_sizes", True)
        self.config = load_config(source, hub_kwargs, config_kwargs)
        self.tokenizer = load_tokenizer(source, hub_kwargs, tokenizer_kwargs)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.model = load_torch_model(source, self.config, hub_kwargs, model_kwargs)
        if dtype is None and backend == "torch" and {"torch_dtype", "dtype"} & set(model_kwargs):
            # Run in the precision model_kwargs asks transformers for, as sentence-transformers does.
            self.dtype = self.model.dtype
        # transformers may copy the config it is given; keep one object so edits (calibration) reach save().
        self.config = self.model.config
        self.model_path = self._local_folder(source, hub_kwargs)
        self.max_length = max_length
        self._auto_batch_tokens = max_batch_tokens is None
        if max_batch_tokens is not None and max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be a positive integer or None, got {max_batch_tokens}.")
        self.max_batch_tokens = max_batch_tokens or _default_batch_tokens(self.device)

        st_config = read_sentence_transformers_config(source, hub_kwargs)
        # sentence-transformers reads a folder's prompts only from its own cross-encoder saves (not a bi-encoder's).
        folder_prompts = st_config if is_sentence_transformers_cross_encoder(source, hub_kwargs, st_config) else {}
        self.prompts, self.default_prompt_name = merge_prompts(prompts, default_prompt_name, folder_prompts)
        _checked_activation(activation_fn)
        self.activation_fn = activation_fn if activation_fn is not None else self._stored_activation(st_config)
        self.backend_name = backend
        self.backend: Backend = self._make_backend(backend, backend_kwargs or {})
        if self.backend.device.type != self.device.type:
            # onnxruntime runs where its providers are: the CPU unless onnxruntime-gpu is installed. Report that
            # device (and size batches for it) rather than the one asked for.
            if device is not None:
                logger.warning("device=%r was asked for, but the %s backend runs on %s.", str(device), backend,
                               self.backend.device)
            self.device = self.backend.device
            if self._auto_batch_tokens:
                self.max_batch_tokens = _default_batch_tokens(self.device)
        self._warned_truncation = False
        # A fast tokenizer keeps its truncation settings as shared state between calls: one thread's settings
        # would apply to another thread's call, so tokenization is serialised (the model call is not).
        self._tokenizer_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # A lock cannot be copied or pickled (copy.deepcopy, multiprocessing): a copy gets a lock of its own.
        return {k: v for k, v in self.__dict__.items() if k != "_tokenizer_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._tokenizer_lock = threading.Lock()

    # ------------------------------------------------------------------ loading helpers
    @staticmethod
    def _local_folder(source: str, hub_kwargs: dict[str, Any]) -> Path | None:
        """The folder the files were read from (the snapshot in the Hub cache for Hub ids)."""
        if os.path.isdir(source):
            return Path(source).resolve()
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(
            source, "config.json", cache_dir=hub_kwargs["cache_dir"], revision=hub_kwargs["revision"]
        )
        return Path(cached).parent if isinstance(cached, str) else None

    def _position_limit(self) -> int | None:
        """Most tokens the model's position embeddings take, if the config says."""
        limit = getattr(self.config, "max_position_embeddings", None)
        positions = getattr(getattr(self.model.base_model, "embeddings", None), "position_embeddings", None)
        # RoBERTa-style models (RoBERTa, XLM-R, CamemBERT, MPNet, Longformer...) number positions from
        # padding_idx + 1, so the first padding_idx + 1 rows of the table are never a token's position.
        if limit and isinstance(positions, torch.nn.Embedding) and positions.padding_idx is not None:
            limit -= positions.padding_idx + 1
        return limit

    @property
    def max_length(self) -> int:
        """Maximum tokens per pair; longer pairs are truncated.

        Stored as the tokenizer's ``model_max_length``, so :meth:`save` keeps a value set after loading
        (``model.max_length = 256``), as in sentence-transformers. None (the constructor's default) keeps the
        tokenizer's ``model_max_length``, capped at the model's position embeddings.

        Raises:
            ValueError: on setting more tokens than the model has positions, or fewer than 4.
        """
        return int(self.tokenizer.model_max_length)

    @max_length.setter
    def max_length(self, max_length: int | None) -> None:
        limit = self._position_limit()
        if max_length is None:
            max_length = self.tokenizer.model_max_length
            if limit and (max_length is None or max_length > limit):
                max_length = limit
            if max_length is None or max_length > 100_000:
                max_length = 512
        elif limit and max_length > limit:
            raise ValueError(f"max_length={max_length} is more than the model's {limit} positions; pass at most "
                             f"{limit}, or None for the model's own limit.")
        if max_length < 4:
            raise ValueError(f"max_length must be at least 4 tokens, got {max_length}.")
        self.tokenizer.model_max_length = int(max_length)

    @property
    def max_seq_length(self) -> int:
        """sentence-transformers 6's name of :attr:`max_length` (settable too)."""
        return self.max_length

    @max_seq_length.setter
    def max_seq_length(self, max_length: int | None) -> None:
        self.max_length = max_length

    @property
    def default_activation_function(self) -> Callable:
        """Deprecated sentence-transformers name of :attr:`activation_fn` (warns, as it does there)."""
        warnings.warn("CrossEncoder.default_activation_function is a deprecated sentence-transformers name; "
                      "use activation_fn.", DeprecationWarning, stacklevel=2)
        return self.activation_fn

    def _stored_activation(self, st_config: dict[str, Any]) -> Callable:
        path = stored_activation_path(self.config, st_config)
        if hasattr(self.config, LEGACY_KEY):
            delattr(self.config, LEGACY_KEY)
        resolved = resolve_activation(path, self.trust_remote_code) if path else None
        return resolved if resolved is not None else default_activation(self.num_labels)

    def _make_backend(self, backend: str, backend_kwargs: dict[str, Any]) -> Backend:
        if not isinstance(backend_kwargs, Mapping):
            raise ValueError(f"backend_kwargs must be a dict of backend options such as {{'quantize': 'int8'}}, "
                             f"got {type(backend_kwargs).__name__} {backend_kwargs!r}.")
        if backend == "onnx":
            from crossencoder.backends.onnx_backend import OnnxBackend

            known = [name for name in inspect.signature(OnnxBackend.from_cross_encoder).parameters
                     if name not in ("cls", "cross_encoder")]
            unknown = sorted(set(backend_kwargs) - set(known))
            if unknown:
                raise ValueError(f"Unknown onnx backend_kwargs {unknown}; the options are {', '.join(known)}.")
            return OnnxBackend.from_cross_encoder(self, **backend_kwargs)
        if backend_kwargs:
            raise ValueError(f"The torch backend takes no backend_kwargs, got {sorted(backend_kwargs)}.")
        return TorchBackend(self.model, self.device, self.dtype)

    def to(self, device: str | torch.device) -> CrossEncoder:
        """Move the model to another device, as ``model.to("cuda")`` does in sentence-transformers.

        Args:
            device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"mps"``.

        Returns:
            This cross-encoder, so ``model = CrossEncoder(...).to("cuda")`` works.

        Raises:
            ValueError: the device is not available, or the model runs on the onnx backend (whose device is set
                when it is created: ``CrossEncoder(..., backend="onnx", device=...)``).
        """
        if self.backend_name != "torch":
            raise ValueError(f"to() moves the torch backend; this model runs on {self.backend_name!r}: create it "
                             "with device=... instead.")
        self.device = resolve_device(device)
        if self._auto_batch_tokens:
            self.max_batch_tokens = _default_batch_tokens(self.device)
        self.backend = TorchBackend(self.model, self.device, self.dtype)
        return self

    # ------------------------------------------------------------------ properties
    @property
    def num_labels(self) -> int:
        """Number of outputs per pair (1 for rerankers / similarity models)."""
        return int(self.config.num_labels)

    @property
    def id2label(self) -> dict[int, str]:
        """Label names of a classifier, e.g. ``{0: "contradiction", 1: "entailment", 2: "neutral"}``."""
        return {int(k): v for k, v in (self.config.id2label or {}).items()}

    @property
    def calibration(self) -> dict[str, Any] | None:
        """The fitted score calibration stored in the config (``{"method", "a", "b"}``), or None."""
        settings = getattr(self.config, CONFIG_KEY, None)
        return settings.get("calibration") if isinstance(settings, dict) else None

    def __repr__(self) -> str:
        return (
            f"CrossEncoder({self.model_name_or_path!r}, num_labels={self.num_labels}, max_length={self.max_length}, "
            f"backend={self.backend_name!r}, device={str(self.device)!r})"
        )

    # ------------------------------------------------------------------ tokenization
    def _encode(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, list[int]]]:
        """Tokenize pairs without padding, truncating over-long ones (passage cut, query kept when it fits)."""
        if not pairs:
            return []
        with self._tokenizer_lock:
            return self._encode_unlocked(pairs)

    def _encode_unlocked(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, list[int]]]:
        firsts = [a for a, _ in pairs]
        seconds = [b for _, b in pairs]
        full = self.tokenizer(firsts, seconds, truncation=False, padding=False, verbose=False)
        keys = [k for k in ("input_ids", "token_type_ids") if k in full]
        encodings = [{k: full[k][i] for k in keys} for i in range(len(pairs))]
        too_long = [i for i, e in enumerate(encodings) if len(e["input_ids"]) > self.max_length]
        if too_long:
            if not self._warned_truncation:
                logger.warning(
                    "%d of %d pairs are longer than max_length=%d tokens and were truncated (the second text is "
                    "cut). To score long passages window by window, use rank(..., long_documents='max') "
                    "(CLI: --long-documents max on rank, search and beir).",
                    len(too_long), len(pairs), self.max_length,
                )
                self._warned_truncation = True
            self._truncate(pairs, too_long, encodings, keys)
        return encodings

    def _truncate(
        self, pairs: Sequence[tuple[str, str]], indices: list[int], encodings: list[dict], keys: list[str]
    ) -> None:
        special = self.tokenizer.num_special_tokens_to_add(pair=True)
        query_lengths = self.tokenizer([pairs[i][0] for i in indices], add_special_tokens=False, verbose=False)
        # Keep the whole query when it leaves room for the passage; otherwise cut both (longest first).
        groups: dict[str, list[int]] = {"only_second": [], "longest_first": []}
        for i, ids in zip(indices, query_lengths["input_ids"]):
            fits = len(ids) + special < self.max_length
            groups["only_second" if fits else "longest_first"].append(i)
        for strategy, group in groups.items():
            if not group:
                continue
            cut = self.tokenizer(
                [pairs[i][0] for i in group], [pairs[i][1] for i in group],
                truncation=strategy, max_length=self.max_length, padding=False,
            )
            for row, i in enumerate(group):
                encodings[i] = {k: cut[k][row] for k in keys}

    def _pad(self, encodings: Sequence[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        return pad_batch(encodings, self.tokenizer.pad_token_id or 0, self.tokenizer.padding_side)

    def tokenize(self, pairs: Sequence[tuple[str, str]]) -> BatchEncoding:
        """Tokenize pairs into padded tensors, with the same truncation as :meth:`predict` (used for training).

        Args:
            pairs: ``(text_a, text_b)`` pairs.

        Returns:
            A ``BatchEncoding`` of int64 tensors (``input_ids``, ``attention_mask``[, ``token_type_ids``]) on the
            model's device, ready for ``model.model(**features)``.
        """
        pairs = validate_pairs(pairs)
        if not pairs:
            raise ValueError("tokenize() needs at least one pair.")
        return BatchEncoding(self._pad(self._encode(pairs))).to(self.device)

    # ------------------------------------------------------------------ inference
    def _forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Run one batch; on a GPU out-of-memory error, split it in two and retry each half."""
        try:
            return self.backend.forward(features)
        except torch.cuda.OutOfMemoryError:
            n = features["input_ids"].shape[0]
            if n == 1:
                raise
            torch.cuda.empty_cache()
            logger.warning("GPU out of memory on a batch of %d pairs; splitting it and retrying.", n)
            half = n // 2
            return torch.cat([
                self._forward({k: v[:half] for k, v in features.items()}),
                self._forward({k: v[half:] for k, v in features.items()}),
            ])

    def _logits(
        self,
        encodings: list[dict[str, list[int]]],
        batch_size: int,
        max_batch_tokens: int | None,
        progress: tqdm,
    ) -> torch.Tensor:
        """Raw float32 logits ``[n, num_labels]`` in input order, computed in length-sorted token-budget batches."""
        lengths = [len(e["input_ids"]) for e in encodings]
        budget = self.max_batch_tokens if max_batch_tokens is None else max_batch_tokens
        out = torch.empty((len(encodings), self.num_labels), dtype=torch.float32)
        for batch in token_budget_batches(lengths, batch_size, budget):
            out[batch] = self._forward(self._pad([encodings[i] for i in batch]))
            progress.update(len(batch))
        return out

    @staticmethod
    def _progress(num_pairs: int, batch_size: int, show_progress_bar: bool | None) -> tqdm:
        """The "Scoring pairs" bar on stderr; None shows it for long inputs (20+ batches), and only on a terminal."""
        if show_progress_bar is None:
            disable: bool | None = True if num_pairs < _PROGRESS_MIN_BATCHES * max(batch_size, 1) else None
        else:
            disable = not show_progress_bar
        return tqdm(total=num_pairs, desc="Scoring pairs", unit="pair", disable=disable)

    def _score(
        self,
        pairs: Sequence[tuple[str, str]],
        batch_size: int,
        max_batch_tokens: int | None,
        show_progress_bar: bool | None,
    ) -> tuple[torch.Tensor, list[int]]:
        """Raw logits ``[n, num_labels]`` of non-empty ``pairs`` and each pair's token count.

        Pairs are tokenized ``_ENCODE_CHUNK`` at a time: token ids held as Python lists cost about 8 KB a pair, so a
        million pairs tokenized at once would take gigabytes. Each chunk is still length-sorted into batches.
        """
        logits: list[torch.Tensor] = []
        tokens: list[int] = []
        with self._progress(len(pairs), batch_size, show_progress_bar) as bar:
            for start in range(0, len(pairs), _ENCODE_CHUNK):
                encodings = self._encode(pairs[start:start + _ENCODE_CHUNK])
                logits.append(self._logits(encodings, batch_size, max_batch_tokens, bar))
                tokens.extend(len(e["input_ids"]) for e in encodings)
        return torch.cat(logits), tokens

    def logits_with_token_counts(
        self,
        pairs: Sequence[tuple[str, str]],
        batch_size: int = 32,
        max_batch_tokens: int | None = None,
        show_progress_bar: bool | None = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
    ) -> tuple[torch.Tensor, list[int]]:
        """Raw logits of pairs, and how many tokens each pair fed the model (after truncation).

        What :meth:`predict` computes before any activation, plus the token counts from the same tokenization,
        for callers that account for usage (the server's ``usage`` field) without tokenizing twice.

        Args:
            pairs: ``(text_a, text_b)`` pairs.
            batch_size: Maximum pairs per batch.
            max_batch_tokens: Token budget per batch (default: the model's ``max_batch_tokens``).
            show_progress_bar: As in :meth:`predict`.
            prompt_name, prompt: As in :meth:`predict` (the default prompt applies here too; its tokens count).

        Returns:
            float32 logits of shape ``(n, num_labels)`` on the CPU, in input order, and ``n`` token counts
            (special tokens included).

        Raises:
            TypeError: ``pairs`` is not a list of pairs of strings.
            ValueError: ``prompt_name`` is not one of the model's prompts.

        Example:
            >>> logits, tokens = model.logits_with_token_counts([("berlin population", "Berlin has 3.5M people.")])
            >>> logits.shape, tokens
            (torch.Size([1, 1]), [13])
        """
        pair_list = validate_pairs(pairs)
        text = self._prompt(prompt, prompt_name)
        if not pair_list:
            return torch.empty((0, self.num_labels), dtype=torch.float32), []
        return self._score(with_prompt(pair_list, text), batch_size, max_batch_tokens, show_progress_bar)

    def _prompt(self, prompt: str | None, prompt_name: str | None) -> str:
        """The text this call prepends to the first text of each pair (``""`` for none)."""
        return resolve_prompt(self.prompts, self.default_prompt_name, prompt, prompt_name)

    def predict(
        self,
        pairs: Sequence[tuple[str, str]] | tuple[str, str] | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        activation_fn: Callable | None = None,
        apply_softmax: bool = False,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        max_batch_tokens: int | None = None,
        calibrated: bool = False,
        symmetric: bool = False,
        prompt_name: str | None = None,
        prompt: str | None = None,
        **kwargs: Any,
    ) -> np.ndarray | torch.Tensor | list[torch.Tensor] | np.floating:
        """Score sentence pairs.

        Pairs are sorted by length and grouped into batches of at most ``batch_size`` pairs and at most
        ``max_batch_tokens`` padded tokens; scores come back in the input order.

        Args:
            pairs: A list of ``(text_a, text_b)`` pairs, or a single pair.
            batch_size: Maximum pairs per batch.
            show_progress_bar: Show a progress bar on stderr; None shows one for long inputs on a terminal.
            activation_fn: Overrides the model's activation for this call (e.g. ``torch.nn.Identity()`` for logits).
            apply_softmax: For classifiers, apply softmax over the labels (after the activation).
            convert_to_numpy: Return a numpy array (float32).
            convert_to_tensor: Return a torch tensor on the model's device, as sentence-transformers does (takes
                precedence over ``convert_to_numpy``).
            max_batch_tokens: Token budget per batch for this call (default: the model's ``max_batch_tokens``).
            calibrated: Return probabilities from the calibration stored in the model folder
                (``sigmoid(a * logit + b)``; see ``crossencoder calibrate``) instead of applying ``activation_fn``.
            symmetric: Score each pair in both orders and average the logits, at twice the cost. For symmetric
                tasks (semantic similarity, paraphrase), where the model's reading of ``(a, b)`` and ``(b, a)``
                differs only by noise; not for query-passage re-ranking or NLI, where order carries meaning.
                A prompt goes before the first text of both orders.
            prompt_name: Name of one of :attr:`prompts` to prepend to the first text of every pair (default: the
                model's ``default_prompt_name``, if any).
            prompt: Text to prepend instead (takes precedence over ``prompt_name``, as in sentence-transformers;
                ``""`` turns the default prompt off).
            **kwargs: sentence-transformers' names, so its calls run unchanged: ``inputs=`` (v5+) or
                ``sentences=`` (older) for ``pairs``, ``activation_fct=`` for ``activation_fn``, and
                ``num_workers=`` (no effect here).

        Returns:
            Shape ``(n,)`` for 1-label models, ``(n, num_labels)`` for classifiers; a scalar / one row for a
            single pair. Without numpy/tensor conversion, a list of 0-d / 1-d tensors.

        Raises:
            TypeError: ``pairs`` is not a list of pairs of strings (the message names the index).
            ValueError: a pair has the wrong length, bad batch sizes, ``calibrated=True`` without a calibration, or
                ``prompt_name`` is not one of the model's prompts (the message lists them).

        Example:
            >>> model.predict([("How many people live in Berlin?", "Berlin has 3.5 million inhabitants."),
            ...                ("How many people live in Berlin?", "Berlin is well known for its museums.")])
            array([0.98, 0.01], dtype=float32)
        """
        if kwargs:
            compat = _sentence_transformers_arguments("predict", kwargs)
            if "pairs" in compat and pairs is not None:
                raise TypeError("predict() got the pairs twice: pass them positionally or as inputs=, not both.")
            pairs = compat.get("pairs", pairs)
            activation_fn = compat.get("activation_fn", activation_fn)
        single = is_single_pair(pairs)
        pair_list = validate_pairs([pairs] if single else pairs)
        _checked_activation(activation_fn)
        text = self._prompt(prompt, prompt_name)
        if not pair_list:
            scores = torch.empty((0,) if self.num_labels == 1 else (0, self.num_labels), dtype=torch.float32)
        else:
            # Symmetric: one call for both orders, so the two halves share length-sorted batches.
            to_score = with_prompt(with_swapped(pair_list) if symmetric else pair_list, text)
            logits, _ = self._score(to_score, batch_size, max_batch_tokens, show_progress_bar)
            if symmetric:
                logits = average_orders(logits)
            scores = self._apply_activation(logits, activation_fn, apply_softmax, calibrated)
        if convert_to_tensor:
            result: Any = scores.to(self.device)
        elif convert_to_numpy:
            result = scores.numpy()
        else:
            result = list(scores)
        return result[0] if single else result

    def _apply_activation(
        self, logits: torch.Tensor, activation_fn: Callable | None, apply_softmax: bool, calibrated: bool
    ) -> torch.Tensor:
        if calibrated:
            calibration = self.calibration
            if calibration is None:
                raise ValueError("calibrated=True but this model has no calibration: fit one with `crossencoder calibrate`.")
            if self.num_labels != 1:
                raise ValueError("Score calibration applies to 1-label models only.")
            scores = torch.sigmoid(float(calibration["a"]) * logits + float(calibration["b"]))
        else:
            fn = activation_fn if activation_fn is not None else self.activation_fn
            scores = fn(logits) if fn is not None else logits
        if self.num_labels == 1:
            scores = scores.squeeze(-1)
        elif apply_softmax:
            scores = torch.softmax(scores, dim=1)
        return scores

    def predict_labels(self, pairs: Sequence[tuple[str, str]], batch_size: int = 32, **kwargs: Any) -> list[str]:
        """Predicted label name of each pair, for classifiers (``num_labels > 1``), from ``config.id2label``.

        Example:
            >>> nli = CrossEncoder("cross-encoder/nli-deberta-v3-base")
            >>> nli.predict_labels([("A man is eating pizza", "A man eats something")])
            ['entailment']
        """
        if self.num_labels < 2:
            raise ValueError("predict_labels() needs a classifier (num_labels > 1); use predict() for scores.")
        scores = self.predict(pairs, batch_size=batch_size, convert_to_numpy=True, **kwargs)
        scores = np.atleast_2d(scores)
        names = self.id2label
        return [names.get(int(i), str(int(i))) for i in scores.argmax(axis=1)]

    def rank(
        self,
        query: str,
        documents: Sequence[str],
        top_k: int | None = None,
        return_documents: bool = False,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        activation_fn: Callable | None = None,
        apply_softmax: bool = False,
        max_batch_tokens: int | None = None,
        calibrated: bool = False,
        long_documents: Aggregation | None = None,
        stride: int | None = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        """Score ``documents`` against ``query`` and return them best first.

        Args:
            query: The query.
            documents: Passages to rank.
            top_k: Keep only the best ``top_k`` (None keeps all).
            return_documents: Add each document's ``text`` to its result.
            batch_size, show_progress_bar, activation_fn, apply_softmax, max_batch_tokens, calibrated:
                as in :meth:`predict`.
            long_documents: None truncates passages longer than the window. ``"max"``, ``"mean"`` or ``"first"``
                splits them into overlapping token windows (the query repeated in each), scores every window and
                aggregates per document; results then gain ``window`` (index of the best window; the opening
                one for ``"first"``) and ``window_span`` (its ``(start, end)`` character offsets in the document).
            stride: Tokens shared by consecutive windows (default: ``max_length // 8``, at most 64 and at most half
                of the tokens the query leaves to the passage).
            prompt_name, prompt: As in :meth:`predict`: the prompt goes before the query (in every window of a
                long document, where its tokens take room from the passage).
            **kwargs: sentence-transformers' names, so its calls run unchanged: ``activation_fct=`` for
                ``activation_fn``; ``num_workers=``, ``convert_to_numpy=`` and ``convert_to_tensor=`` (no effect on
                the list of dicts returned).

        Returns:
            ``[{"corpus_id": int, "score": float[, "text": str]}, ...]`` sorted by score, descending; equal scores
            keep the input order.

        Raises:
            ValueError: the model is a classifier (``num_labels > 1``), ``top_k`` is not positive, ``prompt_name``
                is not one of the model's prompts, or the prompted query leaves a window no room for the passage.
            TypeError: the query or a document is not a string.

        Example:
            >>> model.rank("How many people live in Berlin?",
            ...            ["Berlin has 3.5 million inhabitants.", "Berlin is well known for its museums."],
            ...            return_documents=True)
            [{'corpus_id': 0, 'score': 0.98, 'text': 'Berlin has 3.5 million inhabitants.'}, ...]
        """
        if kwargs:
            activation_fn = _sentence_transformers_arguments("rank", kwargs).get("activation_fn", activation_fn)
        if self.num_labels != 1:
            raise ValueError("rank() needs a 1-label model; use predict() or predict_labels() for classifiers.")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be a positive integer or None, got {top_k}.")
        if long_documents is not None and long_documents not in AGGREGATIONS:
            raise ValueError(f"long_documents must be None or one of {', '.join(AGGREGATIONS)}, got {long_documents!r}.")
        docs = validate_documents(query, documents)
        text = self._prompt(prompt, prompt_name)
        scores = np.empty((0,), dtype=np.float32)
        if long_documents is None and docs:
            logits, _ = self._score([(text + query, d) for d in docs], batch_size, max_batch_tokens,
                                    show_progress_bar)
            scores = self._apply_activation(logits, activation_fn, apply_softmax, calibrated).numpy()
        elif long_documents is not None:
            with self._tokenizer_lock:
                windows = split_into_windows(self.tokenizer, query, docs, self.max_length, stride, prompt=text)
            if windows.encodings:
                with self._progress(len(windows.encodings), batch_size, show_progress_bar) as bar:
                    logits = self._logits(windows.encodings, batch_size, max_batch_tokens, bar)
                scores = self._apply_activation(logits, activation_fn, apply_softmax, calibrated).numpy()
        if long_documents is not None:
            scores, best = aggregate(scores, windows.doc_index, len(docs), long_documents)
            first_window = {doc: w for w, doc in reversed(list(enumerate(windows.doc_index)))}
        results: list[dict[str, Any]] = []
        for i, score in enumerate(scores.tolist()):
            results.append({"corpus_id": i, "score": float(score)})
            if long_documents is not None:
                results[-1]["window"] = best[i]
                results[-1]["window_span"] = windows.spans[first_window[i] + best[i]]
            if return_documents:
                results[-1]["text"] = docs[i]
        return [results[i] for i in best_first([r["score"] for r in results])][:top_k]

    # ------------------------------------------------------------------ saving
    def save(self, path: str | os.PathLike, safe_serialization: bool = True) -> None:
        """Save model, tokenizer and settings to a folder that transformers and sentence-transformers both load.

        The activation and the prompts are written in sentence-transformers' conventions (``config.json`` key
        ``sentence_transformers``; ``prompts`` and ``default_prompt_name`` in ``config_sentence_transformers.json``,
        with the ``modules.json`` and ``sentence_bert_config.json`` without which sentence-transformers ignores that
        file), so scores are identical in either library.

        Args:
            path: Output folder (created if needed).
            safe_serialization: Write ``model.safetensors`` (default) rather than a pickle.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        activation = fullname(self.activation_fn) if self.activation_fn is not None else None
        st_settings = dict(getattr(self.config, ST_CONFIG_KEY, None) or {})
        st_settings.update({"activation_fn": activation, "version": _st_version_tag()})
        self.config.sentence_transformers = st_settings
        self.model.save_pretrained(path, safe_serialization=safe_serialization)
        self.tokenizer.save_pretrained(path)
        st_file = path / "config_sentence_transformers.json"
        st_config = json.loads(st_file.read_text()) if st_file.is_file() else {}
        st_config.update({"model_type": "CrossEncoder", "activation_fn": activation, "prompts": self.prompts,
                          "default_prompt_name": self.default_prompt_name})
        st_file.write_text(json.dumps(st_config, indent=2) + "\n")
        (path / "modules.json").write_text(json.dumps(MODULES_JSON, indent=2) + "\n")
        (path / "sentence_bert_config.json").write_text(json.dumps(SENTENCE_BERT_CONFIG, indent=2) + "\n")

    save_pretrained = save

    def push_to_hub(
        self,
        repo_id: str,
        *,
        token: str | bool | None = None,
        private: bool | None = None,
        safe_serialization: bool = True,
        commit_message: str | None = None,
        exist_ok: bool = True,
        revision: str | None = None,
        create_pr: bool = False,
    ) -> str:
        """Save the model as :meth:`save` does and upload it to a Hugging Face Hub repository (created if needed).

        The model card (``README.md``) of the folder the model was loaded from goes with it; the trainer points
        ``model_path`` at its final folder, so a model trained in this process is pushed with the trainer's card.

        Args:
            repo_id: ``"user/name"`` or ``"org/name"``.
            token: Hub token; None uses the one saved by ``hf auth login`` or ``HF_TOKEN``.
            private: Visibility of a repository that does not exist yet.
            safe_serialization: Upload ``model.safetensors`` (default) rather than a pickle.
            commit_message: Defaults to "Upload crossencoder model".
            exist_ok: Upload to an existing repository (default); False refuses one.
            revision: Branch to commit to (created if missing).
            create_pr: Open a pull request instead of committing.

        Returns:
            The URL of the commit (or of the pull request).

        Raises:
            CrossEncoderError: the upload failed (not logged in, no network, offline mode...); the message says why.

        Example:
            >>> model = CrossEncoder("runs/stsb/final")
            >>> model.push_to_hub("my-user/stsb-minilm-cross-encoder", private=True)
        """
        from crossencoder.model.hub import push_folder_to_hub

        with tempfile.TemporaryDirectory(prefix="crossencoder-push-") as tmp:
            self.save(tmp, safe_serialization=safe_serialization)
            card = self.model_path / "README.md" if self.model_path is not None else None
            if card is not None and card.is_file():
                shutil.copyfile(card, Path(tmp) / "README.md")
            return push_folder_to_hub(tmp, repo_id, token=token, private=private, commit_message=commit_message,
                                      exist_ok=exist_ok, revision=revision, create_pr=create_pr)


def _default_batch_tokens(device: torch.device) -> int:
    return CPU_BATCH_TOKENS if device.type == "cpu" else GPU_BATCH_TOKENS


# sentence-transformers' constructor arguments under other names: (our name, deprecated there too?).
# ``classifier_dropout`` goes into ``config_kwargs``; ``processor_kwargs`` is its current name (6.x) of ours.
_LEGACY_NAMES: dict[str, tuple[str, bool]] = {
    "model_name": ("model_name_or_path", True), "default_activation_function": ("activation_fn", True),
    "automodel_args": ("model_kwargs", True), "tokenizer_args": ("tokenizer_kwargs", True),
    "config_args": ("config_kwargs", True), "cache_dir": ("cache_folder", True),
    "classifier_dropout": ("classifier_dropout", True), "processor_kwargs": ("tokenizer_kwargs", False),
}


def _legacy_arguments(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Map sentence-transformers' constructor argument names to ours; refuse anything else.

    The names sentence-transformers itself deprecated warn (DeprecationWarning), as they do there.
    """
    unknown = sorted(set(kwargs) - set(_LEGACY_NAMES))
    if unknown:
        raise TypeError(f"CrossEncoder() got unexpected keyword argument(s): {', '.join(unknown)}.")
    for old in kwargs:
        ours, deprecated = _LEGACY_NAMES[old]
        if deprecated:
            use = 'config_kwargs={"classifier_dropout": ...}' if old == "classifier_dropout" else f"{ours}="
            warnings.warn(f"CrossEncoder({old}=...) is a deprecated sentence-transformers name; use {use}.",
                          DeprecationWarning, stacklevel=3)
    return {_LEGACY_NAMES[old][0]: value for old, value in kwargs.items()}


# sentence-transformers' names for predict()/rank() arguments: (our name or None for "no effect", warn?).
_CALL_NAMES: dict[str, dict[str, tuple[str | None, bool]]] = {
    "predict": {"inputs": ("pairs", False), "sentences": ("pairs", False), "activation_fct": ("activation_fn", True),
                "num_workers": (None, True)},
    "rank": {"activation_fct": ("activation_fn", True), "num_workers": (None, True),
             "convert_to_numpy": (None, False), "convert_to_tensor": (None, False)},
}


def _sentence_transformers_arguments(method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Map sentence-transformers' argument names of ``predict``/``rank`` to ours; refuse anything else.

    Deprecated names (``activation_fct``, ``num_workers``) warn, as they do in sentence-transformers.
    """
    names = _CALL_NAMES[method]
    unknown = sorted(set(kwargs) - set(names))
    if unknown:
        raise TypeError(f"{method}() got unexpected keyword argument(s): {', '.join(unknown)}.")
    out: dict[str, Any] = {}
    for old, value in kwargs.items():
        ours, deprecated = names[old]
        if deprecated:
            use = f"use {ours}=" if ours else "it has no effect"
            warnings.warn(f"{method}({old}=...) is a deprecated sentence-transformers argument; {use}.",
                          DeprecationWarning, stacklevel=3)
        if ours is not None:
            out[ours] = value
    return out


def _st_version_tag() -> str:
    from crossencoder import __version__

    return f"crossencoder-{__version__}"


def _checked_activation(fn: Callable | None) -> None:
    """Reject a non-callable ``activation_fn``, or a class, up front (else the first predict fails inside torch)."""
    if fn is not None and not callable(fn):
        raise TypeError(f"activation_fn must be a callable such as torch.nn.Sigmoid() or None, got {type(fn).__name__}.")
    if isinstance(fn, type):  # calling the class would build a module from the logits
        raise TypeError(f"activation_fn takes an instance such as {fn.__name__}(), not the class {fn.__name__}.")
