"""Export a cross-encoder to ONNX once, optimise and quantize it, and cache the result with a verified manifest.

An export lives in a folder named after a key that hashes everything the file depends on: the model's weights and
config (hashed from memory, so a freshly initialised head is never confused with the saved one), the export
settings (opset, optimisation, quantization) and the torch / onnxruntime versions. The folder holds ``model.onnx``
and ``manifest.json`` with the sha256 of the ``.onnx``; a folder whose manifest is missing, whose key differs or
whose hash does not match is stale or corrupt and is rebuilt. Folders are built under a temporary name and moved
into place with ``os.replace`` (under a file lock), so a crash never leaves a half-written export behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock
from transformers import PreTrainedModel

from crossencoder.backends.first_token import FirstTokenClassifier, supports_first_token
from crossencoder.files import atomic_dir, file_sha256

logger = logging.getLogger(__name__)

# Bump when the export recipe changes so older cached files are rebuilt.
EXPORT_FORMAT = 2
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
QUANTIZE_MODES = ("int8",)
# transformers model types whose graph onnxruntime's BERT optimizer fuses (attention, layer-norm, GELU).
BERT_LIKE = {"bert", "roberta", "xlm-roberta", "camembert", "electra", "ernie", "mpnet"}
# Largest |onnx - torch| logit difference accepted for the fused fp32 graph before falling back to the plain one.
FUSION_TOLERANCE = 1e-3


def cpu_flags() -> set[str]:
    """CPU feature flags from ``/proc/cpuinfo`` (empty where it does not exist)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_int8_profile(flags: set[str] | None = None, machine: str | None = None) -> dict[str, Any]:
    """Pick dynamic-int8 settings for a CPU (default: this one).

    Per-channel weight scales everywhere. 7-bit weights (``reduce_range``) on x86 without VNNI: there the u8 x s8
    multiply-add (``vpmaddubsw``) saturates at 16 bits with full-range weights, which wrecked the scores of a
    small model with large weights in our tests (onnxruntime documents the same advice). The attention block (its
    QKV projection and the score / value products) is quantized only where int8 dot products are fast (VNNI, ARM
    dot-product): there it roughly doubles throughput; on AVX2 without VNNI it was no faster than onnxruntime's
    fused fp32 attention and cost accuracy (see docs/benchmarks.md).

    Args:
        flags: CPU feature flags (default: :func:`cpu_flags`).
        machine: ``platform.machine()`` value (default: this machine's).

    Returns:
        ``{"isa": str, "per_channel": bool, "reduce_range": bool, "quantize_attention": bool}``.
    """
    flags = cpu_flags() if flags is None else flags
    machine = (machine or platform.machine()).lower()
    if machine in {"arm64", "aarch64"}:
        isa = "arm64"
    elif flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        isa = "vnni"
    else:
        isa = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "x86"
    fast_int8 = isa in {"arm64", "vnni"}
    return {"isa": isa, "per_channel": True, "reduce_range": not fast_int8, "quantize_attention": fast_int8}


@dataclass(frozen=True)
class ExportSettings:
    """Everything an export depends on besides the model itself (part of the cache key)."""

    opset: int = 17
    optimize: bool = True
    first_token: bool = True
    quantize: str | None = None
    per_channel: bool = True
    reduce_range: bool = False
    quantize_attention: bool = False

    def key_fields(self) -> dict[str, Any]:
        fields = asdict(self)
        if self.quantize is None:
            # Quantization knobs do not change an fp32 export.
            for name in ("per_channel", "reduce_range", "quantize_attention"):
                fields.pop(name)
        import onnxruntime

        fields.update(format=EXPORT_FORMAT, onnxruntime=onnxruntime.__version__, torch=torch.__version__.split("+")[0])
        return fields


def model_fingerprint(model: PreTrainedModel) -> str:
    """sha256 of the model's config and every parameter / buffer, read from memory.

    The config's ``_name_or_path`` is left out: it is where the model was loaded from, so a copied, moved or
    mounted folder keeps finding the export made for the same weights.
    """
    config = model.config.to_dict()
    config.pop("_name_or_path", None)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def export_key(fingerprint: str, settings: ExportSettings) -> str:
    """The cache key of one export: the model fingerprint plus the export settings."""
    payload = json.dumps({"model": fingerprint, **settings.key_fields()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def default_cache_root() -> Path:
    """``$CROSSENCODER_CACHE/onnx``, else ``~/.cache/crossencoder/onnx``."""
    root = os.environ.get("CROSSENCODER_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "crossencoder") / "onnx"


def export_folder(key: str, model_path: Path | None, model_name: str, cache_dir: str | os.PathLike | None) -> Path:
    """Where the export with this key lives.

    ``cache_dir`` when given; else ``<model folder>/onnx/`` for a writable local model folder (never inside the
    Hugging Face Hub cache, whose snapshots are shared); else :func:`default_cache_root`.
    """
    name = f"crossencoder-{key[:20]}"
    if cache_dir is not None:
        return Path(cache_dir).expanduser() / name
    beside = _beside_model(key, model_path)
    if beside is not None and _can_write_in(beside.parent):
        return beside
    slug = re.sub(r"[^A-Za-z0-9._-]+", "--", model_name.strip("/\\")).strip("-.")[-80:] or "model"
    return default_cache_root() / f"{slug}-{key[:20]}"


def _beside_model(key: str, model_path: Path | None) -> Path | None:
    """``<model folder>/onnx/crossencoder-<key>`` for a local folder; None in the Hub cache, whose snapshots are
    shared between projects."""
    if model_path is None or "models--" in str(model_path):
        return None
    return model_path / "onnx" / f"crossencoder-{key[:20]}"


def _can_write_in(folder: Path) -> bool:
    """Whether exports can be written in ``folder`` (or, when it does not exist yet, created in its parent)."""
    while not folder.exists():
        folder = folder.parent
    return os.access(folder, os.W_OK)


def read_valid_export(folder: Path, key: str, log: bool = True) -> Path | None:
    """Return ``folder/model.onnx`` if its manifest matches ``key`` and the file's sha256; else None (logged unless
    ``log`` is False)."""
    manifest_path = folder / MANIFEST_FILE
    if not folder.exists():
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        entry = manifest["files"][MODEL_FILE]
        if manifest.get("key") != key:
            problem = "it was built from other settings or weights"
        elif file_sha256(folder / MODEL_FILE) != entry["sha256"]:
            problem = "its sha256 does not match the manifest"
        else:
            return folder / MODEL_FILE
    except (OSError, ValueError, KeyError, TypeError) as exc:
        problem = f"its manifest or model file is unreadable ({type(exc).__name__})"
    if log:
        logger.warning("Cached ONNX export %s is stale or corrupt (%s); rebuilding it.", folder, problem)
    return None


class _LogitsOnly(torch.nn.Module):
    """Wraps a sequence-classification model so the exported graph has named inputs and one ``logits`` output.

    With ``first_token`` the last encoder layer is computed for the first token only (see
    :class:`~crossencoder.backends.first_token.FirstTokenClassifier`).
    """

    def __init__(self, model: PreTrainedModel, input_names: list[str], first_token: bool = False) -> None:
        super().__init__()
        self.model = model
        self.first_token = FirstTokenClassifier(model) if first_token else None
        self.input_names = input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        named = dict(zip(self.input_names, inputs))
        if self.first_token is not None:
            return self.first_token(**named)
        return self.model(**named, return_dict=True).logits


def _dummy_inputs(
    input_names: list[str], vocab_size: int, batch: int = 2, length: int = 16, seed: int = 0
) -> dict[str, torch.Tensor]:
    # Ordinary word ids, clear of the special tokens at the start of most vocabularies, and valid in small ones.
    high = min(2000, vocab_size)
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(min(1000, high // 2), high, (batch, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, length // 2:] = 0  # one padded row, so masking is part of what is verified
    values = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    return {name: values[name] for name in input_names}


def _torch_export(
    model: PreTrainedModel, input_names: list[str], path: Path, opset: int, first_token: bool = False
) -> None:
    """TorchScript-based export with dynamic batch and sequence axes, eager attention (the pattern ORT fuses)."""
    import warnings

    previous = getattr(model.config, "_attn_implementation", None)
    switched = previous not in (None, "eager") and hasattr(model, "set_attn_implementation")
    was_training = model.training
    try:
        if switched:
            model.set_attn_implementation("eager")
        model.eval()
        dummy = _dummy_inputs(input_names, model.config.vocab_size)
        axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
        axes["logits"] = {0: "batch"}
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes are expected
            torch.onnx.export(
                _LogitsOnly(model, input_names, first_token), tuple(dummy[n] for n in input_names), str(path),
                input_names=input_names, output_names=["logits"], dynamic_axes=axes, opset_version=opset,
                do_constant_folding=True, dynamo=False,
            )
    finally:
        if switched:
            model.set_attn_implementation(previous)
        model.train(was_training)


def open_session(
    path: Path, num_threads: int | None = None, providers: list[str | tuple[str, dict[str, Any]]] | None = None
) -> Any:
    """An onnxruntime ``InferenceSession`` with every graph optimisation on and ``num_threads`` intra-op threads.

    Args:
        path: The ``.onnx`` file.
        num_threads: Intra-op threads (None: onnxruntime's default, one per physical core).
        providers: Execution providers, names or (name, options) tuples (default ``["CPUExecutionProvider"]``).

    Returns:
        The session.

    Example:
        >>> open_session(Path("model.onnx"), num_threads=2).run(["logits"], feed)
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if num_threads:
        options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])


def _max_logit_difference(path: Path, model: PreTrainedModel, input_names: list[str]) -> float:
    dummy = _dummy_inputs(input_names, model.config.vocab_size, batch=3, length=24, seed=1)
    with torch.no_grad():
        expected = model(**dummy).logits.float().numpy()
    got = open_session(path).run(["logits"], {k: v.numpy() for k, v in dummy.items()})[0]
    return float(np.abs(got - expected).max())


def _fuse(model: PreTrainedModel, source: Path, target: Path) -> bool:
    """Run onnxruntime's transformer optimizer (fused attention / layer-norm / GELU); False if unsupported."""
    config = model.config
    if config.model_type not in BERT_LIKE:
        return False
    from onnxruntime.transformers import optimizer

    try:
        optimized = optimizer.optimize_model(
            str(source), model_type="bert", num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size), opt_level=0, use_gpu=False,
        )
    except Exception as exc:  # noqa: BLE001 - the optimizer is best-effort; the plain graph stays valid
        logger.warning("onnxruntime's transformer optimizer failed (%s); using the plain graph.", exc)
        return False
    optimized.save_model_to_file(str(target))
    fused = optimized.get_fused_operator_statistics()
    logger.info("Fused operators: %s", {k: v for k, v in fused.items() if v})
    return True


def _quantize_int8(source: Path, target: Path, settings: ExportSettings) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantizer logs advice about float models ("consider pre-processing") on the root logger; it does
    # not apply to an already optimised graph, so silence it for the duration of the call.
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        quantize_dynamic(
            str(source), str(target), weight_type=QuantType.QInt8, per_channel=settings.per_channel,
            reduce_range=settings.reduce_range,
            op_types_to_quantize=["MatMul", "Attention"] if settings.quantize_attention else ["MatMul"],
            # Shape inference cannot type the outputs of ORT's fused (com.microsoft) operators.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        logging.disable(previous)


def _write_manifest(folder: Path, key: str, settings: ExportSettings, source_name: str, details: dict) -> None:
    manifest = {
        "key": key,
        "settings": settings.key_fields(),
        "model": source_name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": {MODEL_FILE: {"sha256": file_sha256(folder / MODEL_FILE),
                               "size": (folder / MODEL_FILE).stat().st_size}},
        **details,
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def build_export(
    model: PreTrainedModel,
    input_names: list[str],
    settings: ExportSettings,
    model_path: Path | None,
    model_name: str,
    cache_dir: str | os.PathLike | None = None,
    fingerprint: str | None = None,
) -> Path:
    """Return the path of a valid cached ``model.onnx`` for these settings, exporting it first if needed.

    A quantized export is built from the (cached) fp32 export of the same model.

    Args:
        model: The torch model (fp32, CPU).
        input_names: Graph inputs, e.g. ``["input_ids", "attention_mask", "token_type_ids"]``.
        settings: Export settings.
        model_path: The model's local folder, if any (the export goes beside it when writable).
        model_name: The model's name, used to name folders in the shared cache.
        cache_dir: Explicit folder for exports.
        fingerprint: :func:`model_fingerprint` of ``model`` if already computed.

    Returns:
        Path of the verified ``model.onnx``.

    Raises:
        RuntimeError: the export failed (the message names the cause); nothing is left in the cache.
    """
    fingerprint = fingerprint or model_fingerprint(model)
    key = export_key(fingerprint, settings)
    folder = export_folder(key, model_path, model_name, cache_dir)
    beside = _beside_model(key, model_path) if cache_dir is None else None
    if beside is not None and beside != folder and beside.exists():
        # A read-only model folder that ships its export (a container image, a read-only mount): use it.
        found = read_valid_export(beside, key)
        if found is not None:
            return found
    found = read_valid_export(folder, key)
    if found is not None:
        return found
    fp32 = None
    if settings.quantize is not None:
        fp32_settings = ExportSettings(opset=settings.opset, optimize=settings.optimize, first_token=settings.first_token)
        fp32 = build_export(model, input_names, fp32_settings, model_path, model_name, cache_dir, fingerprint)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        # Held until the end of the with block below (the proxy releases it exactly once).
        locked = FileLock(str(folder) + ".lock").acquire()
    except OSError as exc:
        raise RuntimeError(
            f"Cannot write the ONNX export of {model_name!r} to {folder.parent}: {exc.strerror or exc}. Pass "
            "backend_kwargs={'cache_dir': <a writable folder>} or set CROSSENCODER_CACHE."
        ) from exc
    with locked:
        found = read_valid_export(folder, key, log=False) if folder.exists() else None
        if found is not None:  # another process built it while we waited for the lock
            return found
        try:
            with atomic_dir(folder) as tmp:
                details = _build_into(tmp, model, input_names, settings, fp32)
                _write_manifest(tmp, key, settings, model_name, details)
        except MemoryError:
            raise
        except Exception as exc:
            # The first line names the cause; exporter errors go on with a dump of the whole traced graph.
            cause = (str(exc).strip().splitlines() or [""])[0]
            raise RuntimeError(f"ONNX export of {model_name!r} failed: {type(exc).__name__}: {cause}") from exc
    logger.info("Wrote ONNX export %s", folder)
    return folder / MODEL_FILE


def _build_into(
    tmp: Path, model: PreTrainedModel, input_names: list[str], settings: ExportSettings, fp32: Path | None
) -> dict[str, Any]:
    target = tmp / MODEL_FILE
    if fp32 is not None:
        _quantize_int8(fp32, target, settings)
        return {"quantized_from": str(fp32)}
    plain = tmp / "plain.onnx"
    first_token = settings.first_token and supports_first_token(model)
    if first_token:
        first_token = _export_first_token(model, input_names, plain, settings.opset)
    if not first_token:
        _torch_export(model, input_names, plain, settings.opset)
    fused = settings.optimize and _fuse(model, plain, target)
    if fused:
        difference = _max_logit_difference(target, model, input_names)
        if difference > FUSION_TOLERANCE:
            logger.warning("The fused ONNX graph differs from torch by %.2g; using the plain graph.", difference)
            fused = False
    if fused:
        plain.unlink()
    else:
        os.replace(plain, target)
    return {"fused": bool(fused), "first_token": first_token}


def _export_first_token(model: PreTrainedModel, input_names: list[str], path: Path, opset: int) -> bool:
    """Export the first-token-only graph; False (nothing kept) if it fails or its logits differ from the model's."""
    try:
        _torch_export(model, input_names, path, opset, first_token=True)
        difference = _max_logit_difference(path, model, input_names)
    except Exception as exc:  # noqa: BLE001 - an optimisation: the full graph is always a valid fallback
        logger.warning("First-token export failed (%s: %s); exporting the full graph.", type(exc).__name__, exc)
        difference = None
    if difference is not None and difference <= FUSION_TOLERANCE:
        return True
    if difference is not None:
        logger.warning("The first-token graph differs from torch by %.2g; exporting the full graph.", difference)
    path.unlink(missing_ok=True)
    return False
