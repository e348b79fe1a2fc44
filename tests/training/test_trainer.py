"""Trainer: resume after an interrupt, atomic folders, best model / early stopping, schedule, accumulation."""

from __future__ import annotations

import json
from contextlib import nullcontext

import pytest
import torch
from safetensors.torch import load_file

from crossencoder import CrossEncoder
from crossencoder.evaluation import ClassificationEvaluator, CorrelationEvaluator, RerankingEvaluator
from crossencoder.training import BinaryCrossEntropyLoss, Trainer, TrainingArguments
from crossencoder.training.checkpoint import CheckpointError, list_checkpoints

DATA = [
    ("cats purr", "a cat purrs", 1.0), ("cats purr", "stocks fell", 0.0), ("dogs bark", "a dog barks", 1.0),
    ("dogs bark", "rain is wet", 0.0), ("birds sing", "a bird sings", 1.0), ("birds sing", "tax forms", 0.0),
    ("fish swim", "a fish swims", 0.8), ("fish swim", "an old car", 0.2), ("bees buzz", "a bee buzzes", 1.0),
    ("bees buzz", "a red door", 0.0), ("cows moo", "a cow moos", 0.9), ("cows moo", "the moon", 0.1),
]  # 12 examples: 3 batches of 4 per epoch


def args(path, **overrides) -> TrainingArguments:
    settings = {"num_epochs": 2, "batch_size": 4, "learning_rate": 1e-3, "save_steps": 2, "logging_steps": 1,
                "show_progress_bar": False}
    settings.update(overrides)
    return TrainingArguments(path, **settings)


def weights(model: CrossEncoder) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.model.state_dict().items()}


class ScriptedEvaluator:
    """Returns a scripted metric per call, to drive best-model selection and early stopping."""

    primary_metric = "score"
    name = "scripted"

    def __init__(self, values):
        self.values = list(values)
        self.calls = 0

    def __call__(self, model):
        value = self.values[self.calls]
        self.calls += 1
        return {"score": value}


def interrupt_after(monkeypatch, steps):
    """Make the trainer raise KeyboardInterrupt (Ctrl-C) in place of optimizer step ``steps + 1``."""
    original_step = Trainer._optimizer_step
    done = {"steps": 0}

    def step_or_interrupt(self, *a, **kw):
        if done["steps"] == steps:
            raise KeyboardInterrupt
        done["steps"] += 1
        return original_step(self, *a, **kw)

    monkeypatch.setattr(Trainer, "_optimizer_step", step_or_interrupt)


def test_interrupted_run_resumes_to_identical_weights(tiny_model_dir, tmp_path, monkeypatch):
    reference = CrossEncoder(tiny_model_dir)
    Trainer(reference, DATA, loss="bce", args=args(tmp_path / "a")).train()

    interrupt_after(monkeypatch, 5)  # as if the user pressed Ctrl-C during step 6
    with pytest.raises(KeyboardInterrupt):
        Trainer(CrossEncoder(tiny_model_dir), DATA, loss="bce", args=args(tmp_path / "b")).train()
    monkeypatch.undo()
    assert [p.name for p in list_checkpoints(tmp_path / "b")] == ["checkpoint-2", "checkpoint-4"]
    assert not (tmp_path / "b" / "final").exists()

    resumed = CrossEncoder(tiny_model_dir)  # fresh weights: everything must come from checkpoint-4
    result = Trainer(resumed, DATA, loss="bce", args=args(tmp_path / "b")).train()
    assert result.global_step == 6
    expected = weights(reference)
    for name, value in weights(resumed).items():
        assert torch.equal(value, expected[name]), name


def test_resumed_run_logs_the_same_losses_as_an_uninterrupted_one(tiny_model_dir, tmp_path, monkeypatch):
    settings = {"logging_steps": 3, "max_steps": 6}
    reference = Trainer(CrossEncoder(tiny_model_dir), DATA, loss="bce", args=args(tmp_path / "a", **settings)).train()
    interrupt_after(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        Trainer(CrossEncoder(tiny_model_dir), DATA, loss="bce", args=args(tmp_path / "b", **settings)).train()
    monkeypatch.undo()
    # Resumed from checkpoint-4: the loss logged at step 6 is still the mean of steps 4-6, not of 5-6 only.
    resumed = Trainer(CrossEncoder(tiny_model_dir), DATA, loss="bce", args=args(tmp_path / "b", **settings)).train()
    assert [entry["step"] for entry in resumed.history] == [3, 6]
    assert [entry["loss"] for entry in resumed.history] == pytest.approx([e["loss"] for e in reference.history])


def test_resume_refuses_checkpoints_of_another_run(tiny_model_dir, tmp_path):
    Trainer(CrossEncoder(tiny_model_dir), DATA, loss="bce", args=args(tmp_path, max_steps=2)).train()
    with pytest.raises(ValueError, match="other data or settings"):
        Trainer(CrossEncoder(tiny_model_dir), DATA[:8], loss="bce", args=args(tmp_path, max_steps=2)).train()
    with pytest.raises(ValueError, match="already holds checkpoints"):
        Trainer(CrossEncoder(tiny_model_dir), DATA, loss="bce", args=args(tmp_path, resume=False)).train()


def test_resume_refuses_other_labels_or_hyperparameters_and_says_what_differs(tiny_model_dir, tmp_path):
    Trainer(CrossEncoder(tiny_model_dir), DATA, loss="bce", args=args(tmp_path, max_steps=2)).train()
    flipped = [(a, b, 1.0 - label) for a, b, label in DATA]  # same count, other content
    with pytest.raises(ValueError, match="training examples differ in content") as refused:
        Trainer(CrossEncoder(tiny_model_dir), flipped, loss="bce", args=args(tmp_path, max_steps=2)).train()
    assert "resume=False and overwrite_output_dir=True (CLI: --no-resume --overwrite-output-dir)" in str(
        refused.value)
    # A finished run rerun with other settings would have kept the old weights under a card with the new ones.
    model = CrossEncoder(tiny_model_dir)
    before = weights(model)
    with pytest.raises(ValueError, match=r"learning_rate 0.001 there, 0.01 now; total_steps 2 there, 3 now"):
        Trainer(model, DATA, loss="bce", args=args(tmp_path, max_steps=3, learning_rate=1e-2)).train()
    assert all(torch.equal(v, before[k]) for k, v in weights(model).items())
    with pytest.raises(ValueError, match=r"loss_config \{'pos_weight': None\} there, \{'pos_weight': 2.0\} now"):
        Trainer(CrossEncoder(tiny_model_dir), DATA, loss=BinaryCrossEntropyLoss(pos_weight=2.0),
                args=args(tmp_path, max_steps=2)).train()
    # Settings that do not shape the weights (logging, saving, evaluation) may change.
    assert Trainer(CrossEncoder(tiny_model_dir), DATA, loss="bce",
                   args=args(tmp_path, max_steps=2, logging_steps=5, save_total_limit=3)).train().global_step == 2
    # Checkpoints of older versions recorded less: refused, not trusted.
    state_file = tmp_path / "checkpoint-2" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["fingerprint"] = {k: state["fingerprint"][k] for k in ("num_examples", "batch_size", "seed")}
    state_file.write_text(json.dumps(state))
    with pytest.raises(ValueError, match="older crossencoder that did not record data_sha256, base_model"):
        Trainer(CrossEncoder(tiny_model_dir), DATA, loss="bce", args=args(tmp_path, max_steps=2)).train()


def test_unreadable_checkpoint_falls_back_to_the_previous_one(tiny_model_dir, tmp_path, caplog):
    first = Trainer(CrossEncoder(tiny_model_dir), DATA, loss="bce", args=args(tmp_path)).train()
    expected = load_file(first.model_path / "model.safetensors")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-4", "checkpoint-6"]
    latest = tmp_path / "checkpoint-6" / "model.safetensors"
    latest.write_bytes(latest.read_bytes()[:1000])  # truncated, e.g. by a full disk outside our atomic writes

    with caplog.at_level("WARNING", logger="crossencoder.training.trainer"):
        result = Trainer(CrossEncoder(tiny_model_dir), DATA, loss="bce", args=args(tmp_path)).train()
    assert f"{latest}: this checkpoint file is truncated or corrupt" in caplog.text
    # Resumed from checkpoint-4: steps 5-6 ran again (a loss, not NaN) to the same weights as the first run.
    assert result.global_step == 6 and result.training_loss == result.training_loss
    final = load_file(result.model_path / "model.safetensors")
    assert all(torch.equal(final[k], expected[k]) for k in expected)
    assert load_file(latest).keys() == expected.keys()  # checkpoint-6 written anew

    for step in (4, 6):
        optimizer_file = tmp_path / f"checkpoint-{step}" / "optimizer.pt"
        optimizer_file.write_bytes(optimizer_file.read_bytes()[:100])
    model = CrossEncoder(tiny_model_dir)
    before = weights(model)
    message = (r"checkpoint-4[/\\]optimizer.pt: this checkpoint file is truncated or corrupt \(.+\)\. "
               r"No readable checkpoint is left in .+--no-resume --overwrite-output-dir")
    with pytest.raises(CheckpointError, match=message):
        Trainer(model, DATA, loss="bce", args=args(tmp_path)).train()
    # The optimizer is restored before the weights, so the failed resume left the model as it was.
    assert all(torch.equal(v, before[k]) for k, v in weights(model).items())


def test_best_model_early_stopping_and_model_card(tiny_model_dir, tmp_path):
    evaluator = ScriptedEvaluator([0.1, 0.5, 0.3, 0.2, 0.9, 0.9])
    model = CrossEncoder(tiny_model_dir)
    trainer = Trainer(model, DATA, loss="bce", evaluator=evaluator,
                      args=args(tmp_path, num_epochs=3, eval_steps=1, early_stopping_patience=2))
    result = trainer.train()
    # Evals at steps 1..4: best 0.5 at step 2, then two evaluations without improvement stop the run.
    assert (result.global_step, result.best_step, result.best_metric) == (4, 2, 0.5)
    assert evaluator.calls == 4
    assert result.metrics == {"score": 0.5}
    best = load_file(tmp_path / "best-model" / "model.safetensors")
    final = load_file(result.model_path / "model.safetensors")
    assert all(torch.equal(best[k], final[k]) for k in best)
    assert all(torch.equal(best[k], v.cpu()) for k, v in model.model.state_dict().items())
    card = (result.model_path / "README.md").read_text()
    assert "BinaryCrossEntropyLoss" in card and "| score | 0.5000 |" in card and "| batch_size | 4 |" in card
    assert model.model_path == result.model_path.resolve()  # so push_to_hub takes this card, not the base model's
    assert CrossEncoder(result.model_path).predict(("cats purr", "a cat purrs")) == pytest.approx(
        float(model.predict(("cats purr", "a cat purrs"))), abs=1e-6)


def test_warmup_then_linear_decay(tiny_model_dir, tmp_path):
    result = Trainer(CrossEncoder(tiny_model_dir), DATA, loss="bce",
                     args=args(tmp_path, warmup_ratio=0.5)).train()
    lrs = [entry["learning_rate"] for entry in result.history if "learning_rate" in entry]
    # 6 steps, 3 of warm-up; the lr logged after step k is the one step k+1 will use.
    assert lrs == pytest.approx([1e-3 * f for f in (1 / 3, 2 / 3, 1, 2 / 3, 1 / 3, 0)])


def test_gradient_accumulation_matches_a_bigger_batch(tiny_model_dir, tmp_path):
    no_dropout = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    # On CPU: on CUDA the two runs pad to different lengths, pick different attention kernels, and Adam turns the
    # float noise of near-zero gradients into whole-lr steps (seen on an H200: 1e-3 apart after 3 steps).
    big = CrossEncoder(tiny_model_dir, config_kwargs=no_dropout, device="cpu")
    Trainer(big, DATA[:8], loss="bce", args=args(tmp_path / "big", batch_size=8, num_epochs=1, max_steps=3)).train()
    small = CrossEncoder(tiny_model_dir, config_kwargs=no_dropout, device="cpu")
    # Same seed -> same example order; 2 micro-batches of 4 make each step's batch of 8.
    trainer = Trainer(small, DATA[:8], loss="bce",
                      args=args(tmp_path / "small", batch_size=4, gradient_accumulation_steps=2, max_steps=3))
    assert trainer.steps_per_epoch == 1
    trainer.train()
    expected = weights(big)
    # Attention key biases get a zero gradient in theory (softmax ignores them); Adam blows float noise there up,
    # so compare every other tensor and the scores.
    for name, value in weights(small).items():
        if not name.endswith("key.bias"):
            assert torch.allclose(value, expected[name], atol=1e-5), name
    pairs = [(a, b) for a, b, _ in DATA]
    assert small.predict(pairs) == pytest.approx(big.predict(pairs), abs=1e-5)


def test_bad_data_and_settings_fail_before_training(tiny_model_dir, tmp_path):
    model = CrossEncoder(tiny_model_dir, device="cpu")  # on CPU, so mixed precision is refused on any machine
    with pytest.raises(ValueError, match=r"data\[1\] label 3.0 is outside \[0, 1\]"):
        Trainer(model, [("a", "b", 1.0), ("c", "d", 3.0)], loss="bce", args=args(tmp_path))
    with pytest.raises(ValueError, match="non-empty"):
        Trainer(model, [], loss="bce", args=args(tmp_path))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        args(tmp_path, batch_size=0)
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        Trainer(model, DATA, loss="bce", args=args(tmp_path, mixed_precision="fp16"))
    assert not list_checkpoints(tmp_path)


def test_a_failed_evaluation_keeps_the_steps_trained_before_it(tiny_model_dir, tmp_path, caplog):
    # A typo in metric_for_best_model shows at the first evaluation, maybe an epoch of training in: it lost it all.
    model = CrossEncoder(tiny_model_dir, device="cpu")
    with pytest.raises(ValueError, match="metric_for_best_model='f1' is not among the evaluator's metrics: acc"):
        Trainer(model, DATA, loss="bce", evaluator=lambda m: {"acc": 1.0},
                args=args(tmp_path, metric_for_best_model="f1", num_epochs=1, save_steps=None)).train()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-3"] and "saved checkpoint-3" in caplog.text
    trained = weights(model)
    fixed = Trainer(CrossEncoder(tiny_model_dir, device="cpu"), DATA, loss="bce",
                    evaluator=lambda m: {"acc": 1.0}, args=args(tmp_path, metric_for_best_model="acc", num_epochs=1,
                                                                save_steps=None))
    result = fixed.train()
    # Resumed at the end: nothing left to train, but the evaluation that failed is done, so the card has metrics.
    assert (result.global_step, result.best_step, result.metrics) == (3, 3, {"acc": 1.0})
    assert result.history[-1] == {"step": 3, "epoch": 0, "eval_acc": 1.0}
    assert "| acc | 1.0000 |" in (result.model_path / "README.md").read_text()
    assert all(torch.equal(v, trained[k]) for k, v in weights(fixed.model).items())


def test_checkpoint_without_state_file_is_ignored(tiny_model_dir, tmp_path):
    Trainer(CrossEncoder(tiny_model_dir), DATA, loss="bce", args=args(tmp_path, max_steps=2)).train()
    (tmp_path / "checkpoint-9").mkdir()  # e.g. a folder copied by hand, half-written
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-2"]
    state = json.loads((tmp_path / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and state["fingerprint"]["num_examples"] == len(DATA)


@pytest.mark.slow
def test_trained_folder_loads_in_sentence_transformers(tiny_model_dir, tmp_path):
    from sentence_transformers import CrossEncoder as STCrossEncoder

    model = CrossEncoder(tiny_model_dir)
    result = Trainer(model, DATA, loss="bce", args=args(tmp_path, max_steps=2)).train()
    pairs = [("cats purr", "a cat purrs"), ("dogs bark", "tax forms")]
    ours = CrossEncoder(result.model_path).predict(pairs)
    theirs = STCrossEncoder(str(result.model_path), device="cpu").predict(pairs)
    assert ours == pytest.approx(theirs, abs=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="mixed precision needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_gpu_trains_float32_weights(precision, tiny_model_dir, tmp_path):
    model = CrossEncoder(tiny_model_dir, device="cuda")
    before = weights(model)
    result = Trainer(model, DATA, loss="bce",
                     args=args(tmp_path, mixed_precision=precision, max_steps=4)).train()
    assert result.global_step == 4 and result.training_loss == result.training_loss  # finite, not NaN
    after = weights(model)
    # Autocast runs the matmuls in half precision but the master weights (and the saved folder) stay float32.
    assert all(v.dtype == torch.float32 for v in after.values())
    assert any(not torch.equal(after[k], before[k]) for k in after)
    expected = {"bf16": "bfloat16", "fp16": "float16"}[precision]
    assert f"| mixed_precision | {expected} |" in (result.model_path / "README.md").read_text()
    reloaded = CrossEncoder(result.model_path, device="cpu").predict(("cats purr", "a cat purrs"))
    assert reloaded == pytest.approx(float(model.predict(("cats purr", "a cat purrs"))), abs=1e-4)



@pytest.mark.parametrize("group", [
    [[0, 1, 2, 3]],                          # an epoch's last step with 1 of its 2 micro-batches
    [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]],    # 10 examples in micro-batches of 4: the last one holds 2
])
def test_accumulated_gradient_is_that_of_one_batch_of_the_same_examples(group, tiny_model_dir, tmp_path):
    # Neither a fraction of the mean gradient (a partial step divided by gradient_accumulation_steps) nor a mean
    # that weighs a 2-example micro-batch like a 4-example one.
    model = CrossEncoder(tiny_model_dir, config_kwargs={"hidden_dropout_prob": 0.0,
                                                        "attention_probs_dropout_prob": 0.0}, device="cpu")
    trainer = Trainer(model, DATA, loss="bce", args=args(tmp_path, gradient_accumulation_steps=2, max_grad_norm=None))
    everything = [trainer.train_data[i] for indices in group for i in indices]
    expected_loss = trainer._forward_loss(everything)
    expected_loss.backward()
    expected = {name: p.grad.clone() for name, p in model.model.named_parameters()}
    model.model.zero_grad(set_to_none=True)

    class Recorder:
        """Stands in for the optimizer and scheduler: keeps the gradients the step would apply."""

        def step(self):
            self.grads = {name: p.grad.clone() for name, p in model.model.named_parameters()}

        def zero_grad(self, set_to_none=True):
            model.model.zero_grad(set_to_none=set_to_none)

    optimizer = Recorder()
    assert trainer._optimizer_step(group, optimizer, Recorder(), None) == pytest.approx(expected_loss.item(), rel=1e-5)
    for name, grad in expected.items():
        assert torch.allclose(optimizer.grads[name], grad, atol=1e-6), name


def test_rerunning_an_early_stopped_run_does_not_train_on(tiny_model_dir, tmp_path):
    settings = {"num_epochs": 3, "eval_steps": 1, "early_stopping_patience": 2}
    first = Trainer(CrossEncoder(tiny_model_dir), DATA, loss="bce", evaluator=ScriptedEvaluator([0.1, 0.5, 0.3, 0.2]),
                    args=args(tmp_path, **settings)).train()
    assert first.global_step == 4
    expected = load_file(first.model_path / "model.safetensors")
    # Running the same script again (as after a kill during the final save) must give the same result.
    evaluator = ScriptedEvaluator([0.9] * 10)
    again = Trainer(CrossEncoder(tiny_model_dir), DATA, loss="bce", evaluator=evaluator,
                    args=args(tmp_path, **settings)).train()
    assert evaluator.calls == 0
    assert (again.global_step, again.best_step, again.metrics) == (4, 2, {"score": 0.5})
    final = load_file(again.model_path / "model.safetensors")
    assert all(torch.equal(final[k], expected[k]) for k in expected)


def test_training_drops_a_calibration_fitted_to_the_old_weights(tiny_model_dir, tmp_path):
    model = CrossEncoder(tiny_model_dir)
    model.config.crossencoder = {"calibration": {"method": "platt", "a": 0.5, "b": -1.0}}
    result = Trainer(model, DATA, loss="bce", args=args(tmp_path, max_steps=2)).train()
    # The fit mapped the old logits to probabilities; on the new ones calibrated=True would return wrong ones.
    assert model.calibration is None and CrossEncoder(result.model_path).calibration is None


def test_a_run_without_a_best_evaluation_never_loads_a_leftover_best_model(tiny_model_dir, tmp_path):
    # A best-model folder left by an earlier run whose checkpoints were deleted to free disk space.
    CrossEncoder(tiny_model_dir).save(tmp_path / "best-model")
    model = CrossEncoder(tiny_model_dir)
    result = Trainer(model, DATA, loss="bce", evaluator=ScriptedEvaluator([float("nan")] * 2),
                     args=args(tmp_path, max_steps=2, eval_steps=1)).train()
    assert result.best_step is None
    trained = load_file(tmp_path / "checkpoint-2" / "model.safetensors")
    assert all(torch.equal(trained[k], v.cpu()) for k, v in model.model.state_dict().items())


def test_model_card_states_the_steps_actually_trained(tiny_model_dir, tmp_path):
    result = Trainer(CrossEncoder(tiny_model_dir), DATA, loss="bce", evaluator=ScriptedEvaluator([0.5, 0.4, 0.3]),
                     args=args(tmp_path, num_epochs=3, eval_steps=1, early_stopping_patience=2,
                               warmup_ratio=0.125)).train()
    card = (result.model_path / "README.md").read_text()
    # 9 steps planned (3 epochs of 3), 3 trained before early stopping; warm-up ceil(9 * 0.125) = 2 steps.
    assert "| epochs | 3 |" in card and "| steps | 3 of 9 (early stopping) |" in card
    assert "| warmup | 2 steps |" in card


def test_classifier_model_card_usage_runs_in_both_libraries():
    from crossencoder.training.model_card import render_model_card

    card = render_model_card("base", 3, "nli.tsv", 6, "CrossEntropyLoss", {}, {}, None, None,
                             id2label={0: "a", 1: "b", 2: "c"})
    usage = card.split("```python\n")[1].split("```")[0]
    # sentence-transformers' CrossEncoder has no predict_labels: the card must not claim the call works there.
    assert "predict_labels" in usage and "or: from sentence_transformers" not in usage
    assert "predict(" in usage and "argmax" in usage


@pytest.mark.parametrize("setting, message", [
    # clip_grad_norm_ with a negative norm flips every gradient's sign: the run would train to be wrong.
    ({"max_grad_norm": -1.0}, "max_grad_norm must be > 0 or None"),
    ({"max_grad_norm": 0.0}, "max_grad_norm must be > 0 or None"),
    ({"weight_decay": -0.01}, "weight_decay must be >= 0"),
    ({"warmup_steps": -1}, "warmup_steps must be an integer >= 0"),
])
def test_settings_that_break_the_optimizer_are_refused(setting, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        args(tmp_path, **setting)


def test_an_fp16_step_the_scaler_skips_does_not_advance_the_schedule(tiny_model_dir, tmp_path):
    # On a GPU, fp16 gradients overflow in the first steps while the scaler finds its scale; those steps change no
    # weight, so they must not use up warm-up either (torch also warns about a scheduler stepped before the optimizer).
    trainer = Trainer(CrossEncoder(tiny_model_dir, device="cpu"), DATA, loss="bce", args=args(tmp_path))

    class OverflowingScaler:
        """Like torch.amp.GradScaler after an overflow: skips the optimizer step and halves its scale."""

        def __init__(self):
            self.scale_value = 65536.0

        def scale(self, loss):
            return loss

        def unscale_(self, optimizer):
            pass

        def step(self, optimizer):
            pass

        def update(self):
            self.scale_value /= 2

        def get_scale(self):
            return self.scale_value

    class Counter:
        steps = 0

        def step(self):
            self.steps += 1

        def zero_grad(self, set_to_none=True):
            trainer.model.model.zero_grad(set_to_none=set_to_none)

    optimizer, scheduler = Counter(), Counter()
    trainer._optimizer_step([[0, 1, 2, 3]], optimizer, scheduler, OverflowingScaler())
    assert (optimizer.steps, scheduler.steps) == (0, 0)
    trainer._optimizer_step([[0, 1, 2, 3]], optimizer, scheduler, None)
    assert (optimizer.steps, scheduler.steps) == (1, 1)


def test_a_model_folder_named_relatively_then_absolutely_resumes(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tiny_model_dir.parent)
    Trainer(CrossEncoder(tiny_model_dir.name), DATA, loss="bce", args=args(tmp_path / "run", max_steps=2)).train()
    # It was refused: "base_model 'tiny-ce0' there, '/tmp/.../tiny-ce0' now".
    resumed = Trainer(CrossEncoder(str(tiny_model_dir)), DATA, loss="bce", args=args(tmp_path / "run", max_steps=2))
    assert resumed.train().global_step == 2


def test_a_sharded_best_model_is_loaded_at_the_end(tiny_model_dir, tmp_path, monkeypatch):
    # A model over save_pretrained's max_shard_size (5 GB in transformers 4.x) is saved as shards plus an index,
    # without model.safetensors: the end-of-run load of the best model failed on it.
    from transformers import PreTrainedModel

    save_pretrained = PreTrainedModel.save_pretrained
    monkeypatch.setattr(PreTrainedModel, "save_pretrained",
                        lambda self, path, **kw: save_pretrained(self, path, **{**kw, "max_shard_size": "1MB"}))
    model = CrossEncoder(tiny_model_dir, device="cpu")
    result = Trainer(model, DATA, loss="bce", evaluator=ScriptedEvaluator([0.9, 0.1]),
                     args=args(tmp_path, max_steps=2, eval_steps=1, save_steps=1, save_total_limit=None)).train()
    best = tmp_path / "best-model"
    assert (best / "model.safetensors.index.json").is_file() and not (best / "model.safetensors").exists()
    assert (result.best_step, result.metrics) == (1, {"score": 0.9})
    step1 = load_file(tmp_path / "checkpoint-1" / "model.safetensors")
    assert all(torch.equal(step1[k], v) for k, v in model.model.state_dict().items())
    step2 = load_file(tmp_path / "checkpoint-2" / "model.safetensors")
    assert not all(torch.equal(step2[k], v) for k, v in model.model.state_dict().items())


def test_loading_a_model_folder_names_what_is_wrong(tiny_model_dir, tmp_path):
    from crossencoder.training.checkpoint import load_model_folder

    model = CrossEncoder(tiny_model_dir, device="cpu").model
    with pytest.raises(CheckpointError, match="no model.safetensors or model.safetensors.index.json"):
        load_model_folder(model, tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text('{"weight_map": {"a": "model-00001.safetensors"}}')
    with pytest.raises(CheckpointError, match="model-00001.safetensors: this checkpoint file is missing"):
        load_model_folder(model, tmp_path)


@pytest.mark.parametrize("mode, bf16_supported, expected", [
    ("bf16", True, torch.bfloat16), ("bf16", False, "needs a GPU with bfloat16 support"),
    ("auto", True, torch.bfloat16), ("auto", False, torch.float16), ("fp16", True, torch.float16),
])
def test_mixed_precision_on_a_gpu_without_bfloat16(mode, bf16_supported, expected, tiny_model_dir, tmp_path,
                                                    monkeypatch):
    # A T4 or V100 only emulates bfloat16: torch's default check says yes, and training ran slower than float32.
    trainer = Trainer(CrossEncoder(tiny_model_dir, device="cpu"), DATA, loss="bce", args=args(tmp_path))
    calls = []

    def is_bf16_supported(including_emulation=True):
        calls.append(including_emulation)
        return bf16_supported or including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(torch.cuda, "device", lambda device: nullcontext())
    trainer.device, trainer.args.mixed_precision = torch.device("cuda"), mode
    if isinstance(expected, str):
        with pytest.raises(ValueError, match=expected):
            trainer._autocast_dtype()
    else:
        assert trainer._autocast_dtype() == expected
    assert calls == [False]
    trainer.device = torch.device("cpu")
    if mode != "auto":  # and on a CPU, fp16 / bf16 are refused up front
        with pytest.raises(ValueError, match=f"mixed_precision='{mode}' needs a CUDA GPU; the model is on cpu"):
            trainer._autocast_dtype()


@pytest.mark.parametrize("hip, capability, expected", [
    (None, (7, 5), torch.float16), (None, (8, 0), torch.bfloat16), ("6.0", (9, 4), torch.bfloat16),
])
def test_mixed_precision_on_torch_without_including_emulation(hip, capability, expected, tiny_model_dir, tmp_path,
                                                               monkeypatch):
    # torch 2.3 (which pyproject allows) has no including_emulation keyword: every GPU run failed with a TypeError.
    trainer = Trainer(CrossEncoder(tiny_model_dir, device="cpu"), DATA, loss="bce", args=args(tmp_path))

    def is_bf16_supported():
        return True  # torch 2.3 counts emulation as support: not to be trusted

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(torch.cuda, "device", lambda device: nullcontext())
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.version, "hip", hip)
    trainer.device, trainer.args.mixed_precision = torch.device("cuda"), "auto"
    assert trainer._autocast_dtype() == expected


def test_mnrl_with_batch_size_1_and_no_hard_negatives_is_refused_before_training(tiny_model_dir, tmp_path):
    # Every query alone in its batch with only its positive: the loss was 0 at every step and the run "succeeded".
    data = [("cats purr", "a cat purrs"), ("dogs bark", "a dog barks")]
    with pytest.raises(ValueError, match="MultipleNegativesRankingLoss has no negative for any query.*batch_size 1"):
        Trainer(CrossEncoder(tiny_model_dir, device="cpu"), data, loss="mnrl", args=args(tmp_path, batch_size=1))
    assert not list_checkpoints(tmp_path)


class FlakyEvaluator(ScriptedEvaluator):
    """A scripted evaluator whose calls listed in ``fail_at`` raise, as a dev set on a full disk or a lost mount."""

    def __init__(self, values, fail_at=()):
        super().__init__(values)
        self.fail_at = set(fail_at)

    def __call__(self, model):
        if self.calls in self.fail_at:
            self.calls += 1
            raise OSError("the dev set is gone")
        return super().__call__(model)


def test_a_resumed_run_redoes_the_evaluation_that_failed(tiny_model_dir, tmp_path):
    settings = {"num_epochs": 3, "eval_steps": 1, "save_steps": None, "early_stopping_patience": 2}
    with pytest.raises(OSError, match="the dev set is gone"):
        Trainer(CrossEncoder(tiny_model_dir), DATA, loss="bce", evaluator=FlakyEvaluator([0.5, None], fail_at=[1]),
                args=args(tmp_path, **settings)).train()
    assert list_checkpoints(tmp_path)[-1].name == "checkpoint-2"
    evaluator = ScriptedEvaluator([0.4, 0.3, 0.9])
    result = Trainer(CrossEncoder(tiny_model_dir), DATA, loss="bce", evaluator=evaluator,
                     args=args(tmp_path, **settings)).train()
    # Step 2 is evaluated (0.4) before step 3 (0.3): two evaluations without improvement stop the run at step 3.
    # Without the redo, steps 3 and 4 were those two and step 2 was never evaluated.
    assert evaluator.calls == 2 and (result.global_step, result.best_step, result.best_metric) == (3, 1, 0.5)
    assert [e["step"] for e in result.history if "eval_score" in e] == [1, 2, 3]
    state = json.loads((tmp_path / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["pending_eval"] is None and state["bad_evals"] == 2


def test_a_redone_evaluation_that_fails_again_stays_pending(tiny_model_dir, tmp_path):
    settings = {"max_steps": 2, "eval_steps": 2}
    for _ in range(2):
        with pytest.raises(OSError, match="the dev set is gone"):
            Trainer(CrossEncoder(tiny_model_dir), DATA, loss="bce", evaluator=FlakyEvaluator([], fail_at=[0]),
                    args=args(tmp_path, **settings)).train()
    result = Trainer(CrossEncoder(tiny_model_dir), DATA, loss="bce", evaluator=ScriptedEvaluator([0.7]),
                     args=args(tmp_path, **settings)).train()
    assert (result.global_step, result.best_step, result.metrics) == (2, 2, {"score": 0.7})


@pytest.mark.parametrize("metric, listed", [
    ("accuracy", "metric_for_best_model='accuracy' is not among the evaluator's metrics: pearson, spearman"),
    ("ndcg@5", "metric_for_best_model='ndcg@5' is not among the evaluator's metrics: pearson, spearman"),
])
def test_an_unknown_metric_for_best_model_is_refused_before_the_first_step(metric, listed, tiny_model_dir,
                                                                              tmp_path, monkeypatch):
    evaluator = CorrelationEvaluator([(a, b, y) for a, b, y in DATA])
    monkeypatch.setattr(Trainer, "_optimizer_step", lambda *a, **kw: pytest.fail("trained a step"))
    trainer_args = args(tmp_path, metric_for_best_model=metric)
    with pytest.raises(ValueError, match=listed + r"\. Set metric_for_best_model \(CLI: --metric-for-best-model\)"):
        Trainer(CrossEncoder(tiny_model_dir), DATA, loss="bce", evaluator=evaluator, args=trainer_args).train()
    assert not list_checkpoints(tmp_path)


def test_metric_for_best_model_may_carry_the_history_prefix(tiny_model_dir, tmp_path):
    evaluator = CorrelationEvaluator([(a, b, y) for a, b, y in DATA])
    trainer = Trainer(CrossEncoder(tiny_model_dir), DATA, loss="bce", evaluator=evaluator,
                      args=args(tmp_path, metric_for_best_model="eval_pearson", max_steps=1))
    assert trainer.metric_name == "pearson"
    result = trainer.train()
    assert result.best_metric == result.metrics["pearson"] == result.history[-1]["eval_pearson"]
    # A plain callable is checked when it first runs, with the same prefix rule.
    plain = Trainer(CrossEncoder(tiny_model_dir), DATA, loss="bce", evaluator=lambda m: {"acc": 0.25},
                    args=args(tmp_path / "plain", metric_for_best_model="eval_acc", max_steps=1)).train()
    assert plain.best_metric == 0.25


def test_an_evaluator_that_does_not_fit_the_model_is_refused_before_the_first_step(tiny_model_dir,
                                                                                    tiny_nli_model_dir, tmp_path):
    nli = CrossEncoder(tiny_nli_model_dir, device="cpu")
    data = [("a man eats", "someone eats", "entailment"), ("a man eats", "nobody eats", "contradiction")]
    with pytest.raises(ValueError, match=r"The evaluator cannot evaluate this model: data\[1\]: label 'maybe' is "
                                         r"not one of the model's labels: contradiction, entailment, neutral"):
        Trainer(nli, data, loss="ce", evaluator=ClassificationEvaluator([*data[:1], ("a", "b", "maybe")]),
                args=args(tmp_path))
    # A primary_metric the evaluator reports only for binary models.
    with pytest.raises(ValueError, match="The evaluator's primary_metric 'f1' is not among the evaluator's metrics: "
                                         "accuracy, macro_f1. Set metric_for_best_model"):
        Trainer(nli, data, loss="ce", evaluator=ClassificationEvaluator(data, primary_metric="f1"), args=args(tmp_path))
    with pytest.raises(ValueError, match="RerankingEvaluator needs a 1-label model; this one has 3 labels"):
        Trainer(nli, data, loss="ce", evaluator=RerankingEvaluator([("q", "a", "b")]), args=args(tmp_path))
    assert not list_checkpoints(tmp_path)


def test_resume_refuses_a_best_model_chosen_by_another_metric_or_direction(tiny_model_dir, tmp_path, monkeypatch):
    settings = {"max_steps": 4, "eval_steps": 1}
    interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        Trainer(CrossEncoder(tiny_model_dir), DATA, loss="bce", evaluator=ScriptedEvaluator([0.9, 0.5]),
                args=args(tmp_path, **settings)).train()
    monkeypatch.undo()
    # Best 0.9 at step 1 by "score", higher is better: a lower-is-better run would keep 0.9 as its best "loss".
    model = CrossEncoder(tiny_model_dir)
    before = weights(model)
    with pytest.raises(ValueError, match=r"checkpoint-2: its best model \(step 1\) was chosen by score \(higher is "
                                         r"better\), this run selects by score \(lower is better\)\. Rerun with "
                                         r"metric_for_best_model='score' and greater_is_better=True"):
        Trainer(model, DATA, loss="bce", evaluator=ScriptedEvaluator([0.1] * 4),
                args=args(tmp_path, greater_is_better=False, **settings)).train()
    assert all(torch.equal(v, before[k]) for k, v in weights(model).items())
    with pytest.raises(ValueError, match=r"chosen by score \(higher is better\), this run selects by acc"):
        Trainer(model, DATA, loss="bce", evaluator=lambda m: {"acc": 0.1},
                args=args(tmp_path, metric_for_best_model="acc", **settings)).train()
    # The same selection resumes; the eval_ prefix names the same metric.
    result = Trainer(model, DATA, loss="bce", evaluator=ScriptedEvaluator([0.95, 0.1]),
                     args=args(tmp_path, metric_for_best_model="eval_score", **settings)).train()
    assert (result.global_step, result.best_step, result.best_metric) == (4, 3, 0.95)


def test_a_best_model_that_failed_to_save_is_not_recorded(tiny_model_dir, tmp_path, monkeypatch):
    # The state recorded step 2 as the best model before best-model was written: after a failed save, the redo of
    # that evaluation counted as no improvement and the run ended on best-model's step-1 weights, called step 2's.
    from crossencoder.training import trainer as trainer_module

    original_save, saves = trainer_module._quiet_save, []

    def save_fails_at_step_2(model, path):
        saves.append(path)
        if len(saves) == 2:
            raise OSError("No space left on device")
        original_save(model, path)

    settings = {"max_steps": 3, "eval_steps": 1, "save_steps": None}
    monkeypatch.setattr(trainer_module, "_quiet_save", save_fails_at_step_2)
    with pytest.raises(OSError, match="No space left on device"):
        Trainer(CrossEncoder(tiny_model_dir), DATA, loss="bce", evaluator=ScriptedEvaluator([0.5, 0.9]),
                args=args(tmp_path, **settings)).train()
    monkeypatch.undo()
    state = json.loads((tmp_path / "checkpoint-2" / "trainer_state.json").read_text())
    assert (state["best_step"], state["best_metric"], state["pending_eval"]) == (1, 0.5, {"epoch": 0})
    assert [e["step"] for e in state["history"] if "eval_score" in e] == [1]
    step_2 = load_file(tmp_path / "checkpoint-2" / "model.safetensors")
    result = Trainer(CrossEncoder(tiny_model_dir), DATA, loss="bce", evaluator=ScriptedEvaluator([0.9, 0.1]),
                     args=args(tmp_path, **settings)).train()
    assert (result.global_step, result.best_step, result.best_metric) == (3, 2, 0.9)
    assert [e["step"] for e in result.history if "eval_score" in e] == [1, 2, 3]
    final = load_file(result.model_path / "model.safetensors")
    assert all(torch.equal(final[k], v) for k, v in step_2.items())
