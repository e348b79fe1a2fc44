"""ONNX backend: parity with torch, int8 quantization, export cache (reuse, stale / corrupt rebuild, atomicity)."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from crossencoder import CrossEncoder  # noqa: E402
from crossencoder.backends import onnx_export  # noqa: E402
from crossencoder.backends.onnx_backend import OnnxBackend  # noqa: E402
from crossencoder.backends.onnx_export import (  # noqa: E402
    ExportSettings,
    cpu_int8_profile,
    export_folder,
    export_key,
    model_fingerprint,
)

PAIRS = [
    ("How many people live in Berlin?", "Berlin has 3.5 million inhabitants and is the capital of Germany."),
    ("How many people live in Berlin?", "Paris is the capital of France."),
    ("What do bees eat?", "Honeybees collect nectar and pollen from flowers, which they turn into honey and bee bread "
                          "to feed the colony through the winter months."),
    ("a", "b"),
    ("A man is playing a guitar.", "A woman is slicing an onion."),
]
IDENTITY = torch.nn.Identity()


@pytest.fixture()
def model_dir(tiny_model_dir, tmp_path):
    """A private copy of the tiny model, so exports written beside it do not leak into other tests."""
    return shutil.copytree(tiny_model_dir, tmp_path / "tiny")


@pytest.fixture()
def nli_dir(tiny_nli_model_dir, tmp_path):
    return shutil.copytree(tiny_nli_model_dir, tmp_path / "nli")


def export_dirs(model_dir):
    return sorted(p for p in (model_dir / "onnx").iterdir() if p.is_dir()) if (model_dir / "onnx").exists() else []


def test_fp32_matches_torch_on_tiny_model(model_dir):
    torch_model = CrossEncoder(model_dir)
    onnx_model = CrossEncoder(model_dir, backend="onnx", backend_kwargs={"num_threads": 1})
    assert isinstance(onnx_model.backend, OnnxBackend)
    assert onnx_model.backend.session.get_session_options().intra_op_num_threads == 1
    expected = torch_model.predict(PAIRS, activation_fn=IDENTITY)
    got = onnx_model.predict(PAIRS, activation_fn=IDENTITY)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    # Padded batches of mixed lengths and batch size 1 take different code paths in the fused attention kernel.
    np.testing.assert_allclose(onnx_model.predict(PAIRS, batch_size=1, activation_fn=IDENTITY), expected, atol=1e-4)
    assert [h["corpus_id"] for h in onnx_model.rank(PAIRS[0][0], [p for _, p in PAIRS])] == \
        [h["corpus_id"] for h in torch_model.rank(PAIRS[0][0], [p for _, p in PAIRS])]


def test_fp32_matches_torch_on_classifier(nli_dir):
    expected = CrossEncoder(nli_dir).predict(PAIRS, apply_softmax=True)
    got = CrossEncoder(nli_dir, backend="onnx").predict(PAIRS, apply_softmax=True)
    assert got.shape == (len(PAIRS), 3)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_unoptimized_export_is_plain_and_matches_torch(model_dir):
    import onnx

    model = CrossEncoder(model_dir, backend="onnx", backend_kwargs={"optimize": False})
    assert json.loads((model.backend.path.parent / "manifest.json").read_text())["fused"] is False
    assert "Attention" not in {node.op_type for node in onnx.load(str(model.backend.path)).graph.node}
    expected = CrossEncoder(model_dir).predict(PAIRS, activation_fn=IDENTITY)
    np.testing.assert_allclose(model.predict(PAIRS, activation_fn=IDENTITY), expected, atol=1e-4, rtol=0)


def test_half_precision_dtype_is_rejected_with_a_clear_error(tiny_model_dir):
    with pytest.raises(ValueError, match="onnx backend runs float32"):
        CrossEncoder(tiny_model_dir, dtype="float16", backend="onnx")


def test_export_is_fused_cached_beside_model_and_has_valid_manifest(model_dir):
    model = CrossEncoder(model_dir, backend="onnx")
    path = model.backend.path
    assert path.parent.parent == model_dir / "onnx"
    manifest = json.loads((path.parent / "manifest.json").read_text())
    assert manifest["files"]["model.onnx"]["sha256"] == onnx_export.file_sha256(path)
    assert manifest["fused"] is True
    import onnx

    op_types = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"Attention", "SkipLayerNormalization"} <= op_types


def test_second_load_reuses_export_without_exporting(model_dir, monkeypatch):
    first = CrossEncoder(model_dir, backend="onnx").backend.path
    mtime = first.stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("re-exported a valid cached model")

    monkeypatch.setattr(onnx_export, "_torch_export", fail)
    second = CrossEncoder(model_dir, backend="onnx").backend.path
    assert second == first and second.stat().st_mtime_ns == mtime


def test_corrupt_export_is_detected_and_rebuilt(model_dir, caplog):
    reference = CrossEncoder(model_dir).predict(PAIRS, activation_fn=IDENTITY)
    path = CrossEncoder(model_dir, backend="onnx").backend.path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: still the right size, wrong content
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="crossencoder.backends.onnx_export"):
        rebuilt = CrossEncoder(model_dir, backend="onnx")
    assert "stale or corrupt" in caplog.text and "sha256" in caplog.text
    assert rebuilt.backend.path == path
    np.testing.assert_allclose(rebuilt.predict(PAIRS, activation_fn=IDENTITY), reference, atol=1e-4)
    assert export_dirs(model_dir) == [path.parent]  # no temp folders left behind


def test_truncated_file_and_missing_manifest_are_rebuilt(model_dir, caplog):
    path = CrossEncoder(model_dir, backend="onnx").backend.path
    path.write_bytes(path.read_bytes()[:100])
    (path.parent / "manifest.json").unlink()
    with caplog.at_level(logging.WARNING, logger="crossencoder.backends.onnx_export"):
        model = CrossEncoder(model_dir, backend="onnx")
    assert "stale or corrupt" in caplog.text
    assert model.predict(PAIRS).shape == (len(PAIRS),)


def test_stale_manifest_key_is_rebuilt(model_dir, caplog):
    path = CrossEncoder(model_dir, backend="onnx").backend.path
    manifest_path = path.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["key"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="crossencoder.backends.onnx_export"):
        CrossEncoder(model_dir, backend="onnx")
    assert "other settings or weights" in caplog.text
    assert json.loads(manifest_path.read_text())["key"] != "0" * 64


def test_changed_weights_get_a_new_export(model_dir, tmp_path):
    first = CrossEncoder(model_dir, backend="onnx", backend_kwargs={"cache_dir": tmp_path / "cache"})
    model = CrossEncoder(model_dir)
    with torch.no_grad():
        model.model.classifier.bias += 1.0
    model.save(tmp_path / "changed")
    second = CrossEncoder(tmp_path / "changed", backend="onnx", backend_kwargs={"cache_dir": tmp_path / "cache"})
    assert second.backend.path != first.backend.path
    expected = model.predict(PAIRS, activation_fn=IDENTITY)
    np.testing.assert_allclose(second.predict(PAIRS, activation_fn=IDENTITY), expected, atol=1e-4)


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_weights_changed_in_place_after_export_are_exported_again(model_dir, monkeypatch, caplog, quantize):
    """Editing model.model after loading must not leave predict() on the old export's weights."""
    onnx_model = CrossEncoder(model_dir, backend="onnx", backend_kwargs={"quantize": quantize})
    first = onnx_model.backend.path
    torch_model = CrossEncoder(model_dir)
    with torch.no_grad():
        onnx_model.model.classifier.bias += 1.0
        torch_model.model.classifier.bias += 1.0
    with caplog.at_level(logging.WARNING, logger="crossencoder.backends.onnx_backend"):
        got = onnx_model.predict(PAIRS, activation_fn=IDENTITY)
    assert "changed after their ONNX export" in caplog.text
    assert onnx_model.backend.path != first and onnx_model.backend.quantize == quantize
    tolerance = 1e-4 if quantize is None else 0.1
    np.testing.assert_allclose(got, torch_model.predict(PAIRS, activation_fn=IDENTITY), atol=tolerance)
    # load_state_dict writes in place too; unchanged weights are not exported again.
    onnx_model.model.load_state_dict(CrossEncoder(model_dir).model.state_dict())
    np.testing.assert_allclose(onnx_model.predict(PAIRS, activation_fn=IDENTITY),
                               CrossEncoder(model_dir).predict(PAIRS, activation_fn=IDENTITY), atol=tolerance)
    # So does a new torch model.
    onnx_model.model = torch_model.model
    np.testing.assert_allclose(onnx_model.predict(PAIRS, activation_fn=IDENTITY),
                               torch_model.predict(PAIRS, activation_fn=IDENTITY), atol=tolerance)
    monkeypatch.setattr(OnnxBackend, "from_cross_encoder", lambda *a, **k: pytest.fail("exported unchanged weights"))
    onnx_model.predict(PAIRS)


def test_key_depends_on_settings_and_weights(tiny_model_dir):
    model = CrossEncoder(tiny_model_dir).model
    fingerprint = model_fingerprint(model)
    fp32, int8 = ExportSettings(), ExportSettings(quantize="int8")
    assert export_key(fingerprint, fp32) != export_key(fingerprint, int8)
    assert export_key(fingerprint, int8) != export_key(fingerprint, ExportSettings(quantize="int8", reduce_range=True))
    attention = ExportSettings(quantize="int8", quantize_attention=True)
    assert export_key(fingerprint, int8) != export_key(fingerprint, attention)
    assert export_key(fingerprint, fp32) != export_key(fingerprint, ExportSettings(opset=18))
    # int8 knobs are irrelevant to an fp32 export and must not fragment its cache.
    assert export_key(fingerprint, fp32) == export_key(fingerprint, ExportSettings(reduce_range=True))
    with torch.no_grad():
        model.classifier.weight[0, 0] += 1e-3
    assert model_fingerprint(model) != fingerprint


def test_cache_location_rules(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSENCODER_CACHE", str(tmp_path / "cache"))
    key = "ab" * 32
    local = tmp_path / "local-model"
    local.mkdir()
    assert export_folder(key, local, "local-model", None).parent == local / "onnx"
    assert export_folder(key, local, "x", tmp_path / "explicit").parent == tmp_path / "explicit"
    hub_snapshot = tmp_path / "hub" / "models--org--name" / "snapshots" / "abc"
    hub_snapshot.mkdir(parents=True)
    hub = export_folder(key, hub_snapshot, "org/name", None)
    assert hub.parent == tmp_path / "cache" / "onnx" and hub.name.startswith("org--name-")


def test_copied_or_read_only_model_folders_reuse_their_export(model_dir, tmp_path, monkeypatch):
    # The key is the weights and config, not the folder's path: a copy (or a container image) finds the export.
    shipped = tmp_path / "image" / "model"
    shutil.copytree(model_dir, shipped)
    built = CrossEncoder(shipped, backend="onnx").backend.path
    assert built.parent.parent == shipped / "onnx"
    monkeypatch.setenv("CROSSENCODER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(onnx_export, "_can_write_in", lambda folder: False)  # a read-only mount (root ignores chmod)

    def fail(*args, **kwargs):
        raise AssertionError("re-exported although the read-only folder ships a valid export")

    monkeypatch.setattr(onnx_export, "_torch_export", fail)
    assert CrossEncoder(shipped, backend="onnx").backend.path == built
    moved = tmp_path / "moved"
    shutil.copytree(shipped, moved)
    assert CrossEncoder(moved, backend="onnx").backend.path == moved / "onnx" / built.parent.name / built.name


def test_unwritable_onnx_subfolder_falls_back_to_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSENCODER_CACHE", str(tmp_path / "cache"))
    local = tmp_path / "local-model"
    (local / "onnx").mkdir(parents=True)
    monkeypatch.setattr(onnx_export, "_can_write_in", lambda folder: folder.name != "onnx")
    assert export_folder("ab" * 32, local, "local-model", None).parent == tmp_path / "cache" / "onnx"


def test_unwritable_cache_folder_is_a_clear_error(model_dir, tmp_path):
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("a file where the cache folder should be")
    with pytest.raises(RuntimeError, match=r"Cannot write the ONNX export of .* to .*cache.*'cache_dir'"):
        CrossEncoder(model_dir, backend="onnx", backend_kwargs={"cache_dir": not_a_folder / "onnx"})


def test_export_releases_its_lock(model_dir, tmp_path):
    from filelock import FileLock

    path = CrossEncoder(model_dir, backend="onnx", backend_kwargs={"cache_dir": tmp_path / "cache"}).backend.path
    with FileLock(str(path.parent) + ".lock", timeout=0):  # raises Timeout if the export still held it
        pass


def test_exporter_errors_are_one_line(model_dir, monkeypatch, tmp_path):
    def broken(*args, **kwargs):
        raise RuntimeError("Unsupported: ONNX export of Slice\nTorch IR graph at exception: graph(%input.1 ...")

    monkeypatch.setattr(onnx_export, "_torch_export", broken)
    with pytest.raises(RuntimeError) as info:
        CrossEncoder(model_dir, backend="onnx", backend_kwargs={"cache_dir": tmp_path / "cache"})
    assert str(info.value).endswith("failed: RuntimeError: Unsupported: ONNX export of Slice")


def test_onnx_reports_the_device_it_runs_on(model_dir, monkeypatch, caplog):
    """device="cuda" without onnxruntime-gpu runs on the CPU: the model says so and sizes batches for the CPU."""
    import onnxruntime

    from crossencoder.model import cross_encoder

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(cross_encoder, "resolve_device", lambda device: torch.device("cuda"))
    with caplog.at_level(logging.WARNING, logger="crossencoder.model.cross_encoder"):
        model = CrossEncoder(model_dir, backend="onnx", device="cuda")
    assert model.backend.device == torch.device("cpu") and model.device == torch.device("cpu")
    assert model.max_batch_tokens == cross_encoder.CPU_BATCH_TOKENS
    assert "device='cuda' was asked for, but the onnx backend runs on cpu" in caplog.text
    assert model.predict(PAIRS).shape == (len(PAIRS),)


def test_failed_export_leaves_nothing_behind(model_dir, monkeypatch, tmp_path):
    def broken(model, input_names, path, opset):
        path.write_bytes(b"half written")
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(onnx_export, "_torch_export", broken)
    with pytest.raises(RuntimeError, match="ONNX export .* failed: RuntimeError: exporter exploded"):
        CrossEncoder(model_dir, backend="onnx", backend_kwargs={"cache_dir": tmp_path / "cache"})
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == []


def test_int8_export_is_quantized_close_and_reloadable(model_dir, monkeypatch):
    reference = CrossEncoder(model_dir).predict(PAIRS, activation_fn=IDENTITY)
    quantized = CrossEncoder(model_dir, backend="onnx", backend_kwargs={"quantize": "int8"})
    path = quantized.backend.path
    import onnx

    graph = onnx.load(str(path)).graph
    assert any(init.data_type == onnx.TensorProto.INT8 for init in graph.initializer)
    weights = {init.name for init in graph.initializer}
    assert "MatMulInteger" in {node.op_type for node in graph.node}
    # Every product with a weight became int8; only activation x activation products (attention scores) stay fp32.
    assert not [n.name for n in graph.node if n.op_type == "MatMul" and weights & set(n.input)]
    got = quantized.predict(PAIRS, activation_fn=IDENTITY)
    # 8-bit weights of a 32-wide random model move logits by a few hundredths; a wrong scale moves them by far more.
    np.testing.assert_allclose(got, reference, atol=0.1)
    # The fp32 export it was built from and the int8 file are both cached: reloading exports nothing.
    monkeypatch.setattr(onnx_export, "_torch_export", lambda *a, **k: pytest.fail("re-exported"))
    monkeypatch.setattr(onnx_export, "_quantize_int8", lambda *a, **k: pytest.fail("re-quantized"))
    again = CrossEncoder(model_dir, backend="onnx", backend_kwargs={"quantize": "int8"})
    assert again.backend.path == path
    np.testing.assert_array_equal(again.predict(PAIRS, activation_fn=IDENTITY), got)


@pytest.mark.parametrize(
    ("flags", "machine", "isa", "attention"),
    [({"avx2", "fma"}, "x86_64", "avx2", False), ({"avx2", "avx512f"}, "x86_64", "avx512", False),
     ({"avx2", "avx512f", "avx512_vnni"}, "x86_64", "vnni", True), ({"avx2", "avx_vnni"}, "x86_64", "vnni", True),
     (set(), "aarch64", "arm64", True)],
)
def test_int8_profile_follows_cpu(flags, machine, isa, attention):
    profile = cpu_int8_profile(flags, machine)
    assert profile["isa"] == isa and profile["quantize_attention"] is attention
    # 7-bit weights exactly where int8 dot products are not VNNI / ARM dot products (saturation).
    assert profile["per_channel"] is True and profile["reduce_range"] is (not attention)


def test_quantize_attention_setting_changes_the_graph(model_dir):
    import onnx

    def op_types(quantize_attention):
        kwargs = {"quantize": "int8", "quantize_attention": quantize_attention}
        path = CrossEncoder(model_dir, backend="onnx", backend_kwargs=kwargs).backend.path
        return {node.op_type for node in onnx.load(str(path)).graph.node}

    assert "QAttention" in op_types(True)
    kept = op_types(False)
    assert "Attention" in kept and "QAttention" not in kept and "MatMulInteger" in kept


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [({"quantize": "int4"}, ValueError, r"backend_kwargs\['quantize'\] must be None or one of 'int8', got 'int4'"),
     ({"num_threads": 0}, ValueError, r"backend_kwargs\['num_threads'\] must be a positive integer or None, got 0"),
     ({"num_threads": "2"}, ValueError, r"backend_kwargs\['num_threads'\] must be"),
     ({"num_threads": True}, ValueError, r"backend_kwargs\['num_threads'\] must be"),
     ({"quantise": "int8"}, ValueError, r"Unknown onnx backend_kwargs \['quantise'\]; the options are quantize, "),
     # Wrong types are named, not taken as truthy, split into characters or passed to the exporter.
     ({"optimize": "no"}, ValueError, r"backend_kwargs\['optimize'\] must be True or False, got 'no'"),
     ({"per_channel": 1}, ValueError, r"backend_kwargs\['per_channel'\] must be True, False or None"),
     ({"opset": "17"}, ValueError, r"backend_kwargs\['opset'\] must be a positive integer, got '17'"),
     ({"cache_dir": 5}, ValueError, r"backend_kwargs\['cache_dir'\] must be a folder path"),
     ({"providers": "CPUExecutionProvider"}, ValueError, r"backend_kwargs\['providers'\] must be a non-empty list"),
     # onnxruntime would print a notice and quietly run on the CPU.
     ({"providers": ["NoSuchExecutionProvider"]}, ValueError, "'NoSuchExecutionProvider' not available"),
     ({"providers": [("NoSuchExecutionProvider", {})]}, ValueError, "'NoSuchExecutionProvider' not available"),
     ({"providers": [["CPUExecutionProvider", {}]]}, ValueError, r"or \(name, options dict\) tuples"),
     ({"providers": [("CPUExecutionProvider", "fast")]}, ValueError, r"backend_kwargs\['providers'\] must be"),
     ("int8", ValueError, "backend_kwargs must be a dict of backend options"),
     (["quantize"], ValueError, "backend_kwargs must be a dict of backend options")],
)
def test_bad_backend_kwargs_are_clear_errors(tiny_model_dir, kwargs, error, match):
    with pytest.raises(error, match=match):
        CrossEncoder(tiny_model_dir, backend="onnx", backend_kwargs=kwargs)


def test_providers_take_onnxruntime_name_and_options_tuples(tiny_model_dir, tmp_path, monkeypatch):
    """onnxruntime's ("CUDAExecutionProvider", {"device_id": 1}) form is taken and reaches the session as given."""
    import onnxruntime

    given = []

    class Recording(onnxruntime.InferenceSession):
        def __init__(self, *args, **kwargs):
            given.append(kwargs["providers"])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", Recording)
    providers = [("CPUExecutionProvider", {"arena_extend_strategy": "kSameAsRequested"})]
    model = CrossEncoder(tiny_model_dir, backend="onnx", backend_kwargs={"providers": providers,
                                                                         "cache_dir": tmp_path})
    assert given[-1] == providers
    assert model.backend.providers == ["CPUExecutionProvider"] and model.backend.device == torch.device("cpu")
    np.testing.assert_allclose(model.predict(PAIRS), CrossEncoder(tiny_model_dir).predict(PAIRS), atol=1e-4)


def test_forward_without_token_type_ids_matches_torch_default(model_dir):
    """A caller that omits token_type_ids gets what transformers does: all zeros."""
    model = CrossEncoder(model_dir, backend="onnx")
    features = dict(model.tokenize(PAIRS[:2]))
    features.pop("token_type_ids")
    got = model.backend.forward(features)
    assert got.dtype == torch.float32 and got.shape == (2, 1)
    with torch.no_grad():
        expected = CrossEncoder(model_dir).model(**features).logits
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-4)


@pytest.mark.slow
def test_minilm_fp32_parity_and_int8_ranking(minilm_model_dir, tmp_path):
    """Realistic size: fp32 ONNX within 1e-4 of torch; int8 keeps the ranking (Spearman > 0.95 on real text)."""
    from scipy.stats import spearmanr

    from crossencoder.cli.bench import SENTENCES

    pairs = [(SENTENCES[i], " ".join(SENTENCES[(i + j) % len(SENTENCES)] for j in range(1, 1 + i % 5)))
             for i in range(len(SENTENCES))] + PAIRS
    cache = {"cache_dir": tmp_path / "cache"}
    expected = CrossEncoder(minilm_model_dir).predict(pairs, activation_fn=IDENTITY)
    got = CrossEncoder(minilm_model_dir, backend="onnx", backend_kwargs=cache).predict(pairs, activation_fn=IDENTITY)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    int8 = CrossEncoder(minilm_model_dir, backend="onnx", backend_kwargs={**cache, "quantize": "int8"})
    assert spearmanr(int8.predict(pairs, activation_fn=IDENTITY), expected)[0] > 0.95
