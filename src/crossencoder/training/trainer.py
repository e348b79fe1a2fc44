"""Fine-tune a :class:`~crossencoder.CrossEncoder`: the training loop, checkpoints, best-model selection, resume."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from crossencoder.files import atomic_dir, recover_dir
from crossencoder.model.cross_encoder import CONFIG_KEY
from crossencoder.training.checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    load_model_folder,
    read_state,
    save_checkpoint,
)
from crossencoder.training.losses import Loss, get_loss
from crossencoder.training.model_card import render_model_card

if TYPE_CHECKING:
    from crossencoder import CrossEncoder

logger = logging.getLogger(__name__)

Evaluator = Callable[["CrossEncoder"], dict[str, float]]

# How to start a run over, for Python and CLI users alike.
_START_OVER = ("start over with resume=False and overwrite_output_dir=True (CLI: --no-resume --overwrite-output-dir), "
               "or use a new output_dir")


@dataclass
class TrainingArguments:
    """Settings of a training run.

    Args:
        output_dir: Folder for checkpoints (``checkpoint-<step>``), the best model (``best-model``) and the final
            model (``final``, with a README.md model card).
        num_epochs: Passes over the training data.
        max_steps: Stop after this many optimizer steps (overrides ``num_epochs``).
        batch_size: Examples per forward pass (ranking losses score several pairs per example).
        gradient_accumulation_steps: Forward passes per optimizer step (effective batch = product).
        learning_rate: Peak learning rate of AdamW.
        weight_decay: AdamW weight decay (not applied to biases and LayerNorm weights).
        warmup_ratio: Fraction of the steps with a linear warm-up; then linear decay to 0.
        warmup_steps: Warm-up steps; overrides ``warmup_ratio``.
        max_grad_norm: Gradient clipping norm (None: no clipping).
        seed: Seeds Python, numpy and torch at the start and fixes the data order of every epoch.
        eval_steps: Evaluate every N optimizer steps; None evaluates at the end of each epoch.
        save_steps: Write a resumable checkpoint every N optimizer steps; None saves when evaluating (or at the
            end of each epoch without an evaluator).
        save_total_limit: How many recent checkpoints to keep (None keeps all).
        metric_for_best_model: Metric that picks the best model (the history's ``eval_`` prefix may be given); None
            uses the evaluator's ``primary_metric``. Checked before the first step against an evaluator's
            ``metric_names(model)``, when it has one.
        greater_is_better: Whether a larger ``metric_for_best_model`` is better.
        load_best_model_at_end: Finish with the best evaluated weights rather than the last ones.
        early_stopping_patience: Stop after this many evaluations without improvement (None: never).
        mixed_precision: ``"auto"`` (on a CUDA GPU bf16 where it has bfloat16 support, compute capability 8.0+,
            else fp16; off on CPU and MPS), ``"no"``, ``"fp16"``, ``"bf16"``. fp16 and bf16 are refused up front
            on a CPU, MPS or a GPU without bfloat16 support (bf16).
        resume: Continue from the latest checkpoint in ``output_dir`` when there is one.
        overwrite_output_dir: Delete existing checkpoints instead of refusing to start when ``resume=False``.
        logging_steps: Log the mean loss every N optimizer steps.
        show_progress_bar: Progress bar with the loss on stderr; None shows it on a terminal.
        train_data_name: Description of the training data for the model card.
        base_model_name: Name of the starting model for the model card (default: the path or id it was loaded
            from; set it when that is a local folder, e.g. ``"sentence-transformers/all-MiniLM-L6-v2"``).
    """

    output_dir: str | os.PathLike
    num_epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 16
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    warmup_steps: int | None = None
    max_grad_norm: float | None = 1.0
    seed: int = 42
    eval_steps: int | None = None
    save_steps: int | None = None
    save_total_limit: int | None = 2
    metric_for_best_model: str | None = None
    greater_is_better: bool = True
    load_best_model_at_end: bool = True
    early_stopping_patience: int | None = None
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    resume: bool = True
    overwrite_output_dir: bool = False
    logging_steps: int = 50
    show_progress_bar: bool | None = None
    train_data_name: str = "user-provided pairs"
    base_model_name: str | None = None

    def __post_init__(self) -> None:
        positive = {"num_epochs": self.num_epochs, "batch_size": self.batch_size,
                    "gradient_accumulation_steps": self.gradient_accumulation_steps,
                    "logging_steps": self.logging_steps}
        optional = {"max_steps": self.max_steps, "eval_steps": self.eval_steps, "save_steps": self.save_steps,
                    "save_total_limit": self.save_total_limit, "early_stopping_patience": self.early_stopping_patience}
        for name, value in {**positive, **{k: v for k, v in optional.items() if v is not None}}.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}.")
        if not 0 <= self.warmup_ratio <= 1:
            raise ValueError(f"warmup_ratio must be in [0, 1], got {self.warmup_ratio}.")
        if self.warmup_steps is not None and (not isinstance(self.warmup_steps, int) or isinstance(
                self.warmup_steps, bool) or self.warmup_steps < 0):
            raise ValueError(f"warmup_steps must be an integer >= 0, got {self.warmup_steps!r}.")
        # A norm <= 0 would not disable clipping: torch then scales every gradient by a factor <= 0.
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0 or None (no clipping), got {self.max_grad_norm}.")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}.")
        if self.mixed_precision not in ("auto", "no", "fp16", "bf16"):
            raise ValueError(f"mixed_precision must be auto, no, fp16 or bf16, got {self.mixed_precision!r}.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (paths as strings)."""
        out = dataclasses.asdict(self)
        out["output_dir"] = os.fspath(self.output_dir)
        return out


@dataclass
class TrainOutput:
    """What :meth:`Trainer.train` returns.

    Attributes:
        global_step: Optimizer steps taken (including those before a resume).
        training_loss: Mean training loss over the steps of this run.
        metrics: Evaluation metrics of the returned model (empty without an evaluator).
        best_metric: Best value of ``metric_for_best_model`` seen, if evaluated.
        best_step: Step of the best evaluation.
        model_path: The final model folder (loads in crossencoder and sentence-transformers).
        history: Logged losses and evaluations, one dict per entry.
    """

    global_step: int
    training_loss: float
    metrics: dict[str, float]
    best_metric: float | None
    best_step: int | None
    model_path: Path
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """Fine-tune a cross-encoder on labelled pairs or ranking data.

    Training data is a plain list of tuples or dicts; the loss decides the shape (see
    :mod:`crossencoder.training.losses`): ``(a, b, score)`` for BCE/MSE, ``(a, b, label)`` for cross-entropy,
    ``(query, positive, negatives...)`` for multiple-negatives ranking, ``(query, [docs], [labels])`` for ListNet,
    ``(query, positive, negative, margin)`` for MarginMSE. Every example is validated before the first step.

    The model trains in place: after :meth:`train` it holds the final weights (the best ones when an evaluator
    and ``load_best_model_at_end`` are set), and ``output_dir/final`` holds the saved folder with a model card.
    An interrupted run (Ctrl-C, kill, crash) continues from the latest checkpoint when started again with the
    same data and arguments.

    Args:
        model: The :class:`~crossencoder.CrossEncoder` to train (torch backend, float32 weights). To start from a
            plain encoder, load it with ``num_labels`` set (a fresh head).
        train_data: Training examples.
        loss: A :class:`~crossencoder.training.losses.Loss` or a short name: ``"bce"``, ``"ce"``, ``"mse"``,
            ``"margin_mse"``, ``"mnrl"``, ``"listnet"``.
        evaluator: Called as ``evaluator(model) -> dict[str, float]`` (see :mod:`crossencoder.evaluation`). One with
            a ``metric_names(model)`` method (those of :mod:`crossencoder.evaluation`) is checked against the model
            and ``metric_for_best_model`` here; a plain callable when it first runs.
        args: :class:`TrainingArguments`.

    Raises:
        ValueError / TypeError: bad arguments, data that does not fit the loss (the message names the example),
            a model that cannot be trained (onnx backend, half precision weights), or an evaluator that refuses the
            model or does not return ``metric_for_best_model`` (the message lists its metrics).

    Example:
        >>> from crossencoder import CrossEncoder
        >>> from crossencoder.evaluation import CorrelationEvaluator
        >>> from crossencoder.training import Trainer, TrainingArguments
        >>> model = CrossEncoder("sentence-transformers/all-MiniLM-L6-v2", num_labels=1)
        >>> train = [("A plane is taking off.", "An air plane is taking off.", 1.0), ...]
        >>> trainer = Trainer(model, train, loss="bce", evaluator=CorrelationEvaluator(dev, name="sts-dev"),
        ...                   args=TrainingArguments("runs/stsb", num_epochs=4, learning_rate=2e-5))
        >>> result = trainer.train()
        >>> result.model_path, result.metrics
        (PosixPath('runs/stsb/final'), {'pearson': 0.89, 'spearman': 0.89})
    """

    def __init__(
        self,
        model: CrossEncoder,
        train_data: Sequence[Any],
        loss: str | Loss = "bce",
        evaluator: Evaluator | None = None,
        args: TrainingArguments | None = None,
    ) -> None:
        if args is None:
            raise ValueError("Trainer needs args=TrainingArguments(output_dir=...).")
        if getattr(model, "backend_name", "torch") != "torch":
            raise ValueError("Training needs the torch backend: load the model with backend='torch'.")
        if next(model.model.parameters()).dtype != torch.float32:
            raise ValueError("Train float32 weights (load with dtype=None) and use mixed_precision for speed.")
        self.model = model
        self.args = args
        self.loss = get_loss(loss)
        self.loss.check_model(model)
        self.evaluator = evaluator
        if train_data is None or isinstance(train_data, (str, bytes)) or len(train_data) == 0:
            raise ValueError("train_data must be a non-empty list of examples.")
        self.train_data = [self.loss.normalize(example, i) for i, example in enumerate(train_data)]
        self.loss.check_data(self.train_data, args.batch_size)
        self.output_dir = Path(args.output_dir)
        self.device = next(model.model.parameters()).device
        self.metric_name = args.metric_for_best_model or getattr(evaluator, "primary_metric", None)
        if evaluator is not None and self.metric_name is None:
            raise ValueError("Set args.metric_for_best_model: the evaluator has no primary_metric.")
        self._check_evaluator()
        self.batches_per_epoch = math.ceil(len(self.train_data) / args.batch_size)
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / args.gradient_accumulation_steps)
        self.total_steps = args.max_steps or self.steps_per_epoch * args.num_epochs
        self.autocast_dtype = self._autocast_dtype()
        self.data_sha256 = _examples_sha256(self.train_data)

    # ------------------------------------------------------------------ setup
    def _check_evaluator(self) -> None:
        """Refuse, before the first step, an evaluator that cannot evaluate the model or lacks the metric to select by.

        Evaluators with a ``metric_names(model)`` method (those of :mod:`crossencoder.evaluation`) are asked up front;
        a plain callable is checked when it first runs. ``metric_for_best_model`` may carry the ``eval_`` prefix of
        the history's keys.

        Raises:
            ValueError: the evaluator refuses the model (e.g. a class label the model lacks), or the metric is not
                among the evaluator's metrics; the message lists them.
        """
        metric_names = getattr(self.evaluator, "metric_names", None)
        if not callable(metric_names):
            return
        try:
            names = list(metric_names(self.model))
        except ValueError as exc:  # "data[i]" here means the evaluation data, not train_data
            raise ValueError(f"The evaluator cannot evaluate this model: {exc}") from None
        self.metric_name = self._resolve_metric(names)

    def _resolve_metric(self, names: Sequence[str]) -> str:
        """``self.metric_name`` as one of the evaluator's metric ``names`` (an ``eval_`` prefix dropped).

        Raises:
            ValueError: it is not among ``names``; the message lists them.
        """
        name = self.metric_name
        if name not in names and name.startswith("eval_") and name[len("eval_"):] in names:
            return name[len("eval_"):]
        if name not in names:
            setting = (f"metric_for_best_model={name!r}" if self.args.metric_for_best_model is not None
                       else f"The evaluator's primary_metric {name!r}")
            raise ValueError(f"{setting} is not among the evaluator's metrics: {', '.join(names)}. Set "
                             "metric_for_best_model (CLI: --metric-for-best-model) to one of them.")
        return name

    def _autocast_dtype(self) -> torch.dtype | None:
        mode = self.args.mixed_precision
        if mode == "no" or (mode == "auto" and self.device.type != "cuda"):
            return None
        if self.device.type != "cuda":
            raise ValueError(f"mixed_precision={mode!r} needs a CUDA GPU; the model is on {self.device}.")
        bf16 = _native_bf16(self.device)
        if mode == "bf16" and not bf16:
            raise ValueError(f"mixed_precision='bf16' needs a GPU with bfloat16 support (compute capability 8.0+, "
                             f"e.g. A100, H100); the one at {self.device} has none: use 'fp16' or 'auto'.")
        return torch.bfloat16 if bf16 and mode != "fp16" else torch.float16

    def _optimizer(self) -> torch.optim.Optimizer:
        decay, no_decay = [], []
        for name, param in self.model.model.named_parameters():
            if param.requires_grad:
                # Biases and normalisation weights are not regularised (standard BERT fine-tuning practice).
                (no_decay if param.ndim < 2 or "LayerNorm" in name or "norm" in name.lower() else decay).append(param)
        groups = [{"params": decay, "weight_decay": self.args.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=self.args.learning_rate)

    def _warmup_steps(self) -> int:
        if self.args.warmup_steps is not None:
            return self.args.warmup_steps
        return math.ceil(self.total_steps * self.args.warmup_ratio)

    @staticmethod
    def _seed_everything(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(seed)

    def _fingerprint(self) -> dict[str, Any]:
        """What must match for a checkpoint to be resumed by this run: everything that shapes the weights.

        The data, the starting model, the loss and the optimisation settings; steps and warm-up as the numbers
        they resolve to, so ``num_epochs`` and an equivalent ``max_steps`` resume each other. Evaluation, saving
        and mixed-precision settings may change between the runs (the latter so a run can move to another device).
        """
        a = self.args
        base_model = a.base_model_name or self.model.model_name_or_path
        if os.path.isdir(base_model):  # a folder named relatively in one run and absolutely in the next is the same
            base_model = os.path.realpath(base_model)
        return {"num_examples": len(self.train_data), "data_sha256": self.data_sha256,
                "base_model": base_model, "max_length": self.model.max_length,
                "loss": self.loss.name, "loss_config": self.loss.config(), "batch_size": a.batch_size,
                "gradient_accumulation_steps": a.gradient_accumulation_steps, "seed": a.seed,
                "learning_rate": a.learning_rate, "weight_decay": a.weight_decay, "total_steps": self.total_steps,
                "warmup_steps": self._warmup_steps(), "max_grad_norm": a.max_grad_norm}

    # ------------------------------------------------------------------ steps
    def _epoch_order(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.args.seed + epoch)
        return torch.randperm(len(self.train_data), generator=generator).tolist()

    def _forward_loss(self, batch: list[Any]) -> torch.Tensor:
        pairs, targets = self.loss.prepare(batch)
        features = {k: v.to(self.device) for k, v in self.model.tokenize(pairs).items()}
        autocast = (torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)
                    if self.autocast_dtype is not None else nullcontext())
        with autocast:
            logits = self.model.model(**features).logits
        return self.loss.compute(logits.float(), **{k: v.to(self.device) for k, v in targets.items()})

    def _evaluate(self) -> dict[str, float]:
        self.model.model.eval()
        try:
            metrics = self.evaluator(self.model) if self.evaluator is not None else {}
        finally:
            self.model.model.train()
        if self.metric_name is not None:
            self.metric_name = self._resolve_metric(list(metrics))
        return {k: float(v) for k, v in metrics.items()}

    def _is_better(self, value: float, best: float | None) -> bool:
        if math.isnan(value):
            return False
        if best is None:
            return True
        return value > best if self.args.greater_is_better else value < best

    def _rotate_checkpoints(self) -> None:
        if self.args.save_total_limit is None:
            return
        for old in list_checkpoints(self.output_dir)[: -self.args.save_total_limit]:
            shutil.rmtree(old, ignore_errors=True)

    # ------------------------------------------------------------------ main loop
    def train(self) -> TrainOutput:
        """Run training; return the final metrics and where the model folder was written.

        Raises:
            OSError: ``output_dir`` cannot be created.
            ValueError: ``output_dir`` holds checkpoints of a different run (other data, model or settings; see
                :meth:`_fingerprint`), holds checkpoints while ``resume=False`` and ``overwrite_output_dir=False``,
                or none of its checkpoints can be read (:class:`~crossencoder.training.checkpoint.CheckpointError`).
            Exception: whatever the evaluator or the write of ``best-model`` raises (or a ``metric_for_best_model``
                missing from its metrics), after a checkpoint of the step is saved so a rerun resumes there and
                evaluates that step first.
        """
        args = self.args
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(f"Cannot create output_dir {str(self.output_dir)!r}: {exc.strerror or exc}.") from exc
        recover_dir(self.output_dir / "best-model")
        self._seed_everything(args.seed)
        model = self.model.model
        optimizer = self._optimizer()
        scheduler = get_linear_schedule_with_warmup(optimizer, self._warmup_steps(), self.total_steps)
        scaler = torch.amp.GradScaler("cuda") if self.autocast_dtype == torch.float16 else None
        state = {"global_step": 0, "epoch": 0, "batch_in_epoch": 0, "best_metric": None, "best_step": None,
                 "best_metrics": {}, "bad_evals": 0, "history": [], "last_metrics": {}, "loss_window": [],
                 "pending_eval": None, "selection": self._selection(), "fingerprint": self._fingerprint(),
                 "args": args.to_dict()}
        state.update(self._maybe_resume(model, optimizer, scheduler, scaler))
        self._drop_calibration()
        model.train()
        if state["pending_eval"] is not None:
            self._redo_failed_evaluation(state, model, optimizer, scheduler, scaler)

        bar = tqdm(total=self.total_steps, initial=state["global_step"], desc="Training", unit="step",
                   disable=None if args.show_progress_bar is None else not args.show_progress_bar, dynamic_ncols=True)
        run_losses: list[float] = []
        # The losses since the last log live in the state, so a resumed run logs the same means as an uninterrupted one.
        window: list[float] = state["loss_window"]
        # A resumed run that had already stopped early is done too: training on would change its result.
        stop = state["global_step"] >= self.total_steps or self._patience_spent(state)
        started = time.perf_counter()
        try:
            while not stop:
                order = self._epoch_order(state["epoch"])
                batches = [order[i:i + args.batch_size] for i in range(0, len(order), args.batch_size)]
                while state["batch_in_epoch"] < len(batches) and not stop:
                    group = batches[state["batch_in_epoch"]:state["batch_in_epoch"] + args.gradient_accumulation_steps]
                    step_loss = self._optimizer_step(group, optimizer, scheduler, scaler)
                    state["batch_in_epoch"] += len(group)
                    state["global_step"] += 1
                    run_losses.append(step_loss)
                    window.append(step_loss)
                    bar.update(1)
                    bar.set_postfix(loss=f"{np.mean(window[-20:]):.4f}", epoch=state["epoch"])
                    step = state["global_step"]
                    if step % args.logging_steps == 0:
                        state["history"].append({"step": step, "epoch": state["epoch"], "loss": float(np.mean(window)),
                                                 "learning_rate": scheduler.get_last_lr()[0]})
                        logger.info("step %d: loss %.4f", step, np.mean(window))
                        window.clear()
                    epoch_end = state["batch_in_epoch"] >= len(batches)
                    last = step >= self.total_steps
                    stop = self._after_step(state, epoch_end, last, model, optimizer, scheduler, scaler)
                    stop = stop or last
                if state["batch_in_epoch"] >= len(batches):
                    state["epoch"] += 1
                    state["batch_in_epoch"] = 0
        except KeyboardInterrupt:
            latest = list_checkpoints(self.output_dir)
            logger.warning("Training interrupted at step %d; run again to resume from %s.", state["global_step"],
                           latest[-1] if latest else "the start (no checkpoint yet)")
            raise
        finally:
            bar.close()
        logger.info("Trained %d steps in %.1fs.", state["global_step"], time.perf_counter() - started)
        return self._finish(state, run_losses)

    def _drop_calibration(self) -> None:
        """Remove a score calibration from the config: it was fitted to the logits of the weights being replaced."""
        settings = getattr(self.model.config, CONFIG_KEY, None)
        if isinstance(settings, dict) and settings.pop("calibration", None) is not None:
            logger.warning("Dropped the model's score calibration: it does not fit the trained weights. Fit a new "
                           "one on held-out pairs (crossencoder calibrate).")

    def _optimizer_step(self, group: list[list[int]], optimizer, scheduler, scaler) -> float:
        """Forward/backward over the micro-batches of one optimizer step, then clip, step and schedule."""
        total = 0.0
        examples = sum(len(indices) for indices in group)
        for indices in group:
            # Weigh each micro-batch's mean loss by its share of the step's examples, so the step's gradient is the
            # mean over them all: an epoch's last step may have fewer passes, and its last micro-batch fewer examples.
            loss = self._forward_loss([self.train_data[i] for i in indices]) * (len(indices) / examples)
            if not torch.isfinite(loss):
                raise RuntimeError(f"The training loss became {loss.item()}: lower the learning rate or check the "
                                   "labels.")
            (scaler.scale(loss) if scaler is not None else loss).backward()
            total += loss.item()
        if scaler is not None:
            scaler.unscale_(optimizer)
        if self.args.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.model.parameters(), self.args.max_grad_norm)
        if scaler is not None:
            scale = scaler.get_scale()
            scaler.step(optimizer)
            scaler.update()
            # After an fp16 overflow the scaler skips the update and lowers its scale: such a step changed no weight
            # and must not use up the schedule (transformers' Trainer does the same).
            stepped = scaler.get_scale() >= scale
        else:
            optimizer.step()
            stepped = True
        if stepped:
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return total

    def _after_step(self, state, epoch_end: bool, last: bool, model, optimizer, scheduler, scaler) -> bool:
        """Evaluate and checkpoint when due; return True when early stopping says to stop."""
        args, step = self.args, state["global_step"]
        stop = False
        periodic = (step % args.eval_steps == 0) if args.eval_steps else epoch_end
        eval_due = self.evaluator is not None and (periodic or last)
        if eval_due:
            try:
                stop = self._evaluate_step(state, state["epoch"])
            except Exception:
                # Keep the steps trained since the last checkpoint (hours, with evaluation once an epoch): a rerun
                # with the evaluator or metric_for_best_model fixed resumes here and evaluates this step first.
                state["pending_eval"] = {"epoch": state["epoch"]}
                self._save_checkpoint(state, epoch_end, model, optimizer, scheduler, scaler)
                logger.warning("The evaluation at step %d failed; saved checkpoint-%d so a rerun resumes there and "
                               "evaluates it again.", step, step)
                raise
        if args.save_steps:
            save_due = step % args.save_steps == 0
        else:
            save_due = eval_due or (self.evaluator is None and epoch_end)
        if save_due or last or stop:
            self._save_checkpoint(state, epoch_end, model, optimizer, scheduler, scaler)
        return stop

    def _evaluate_step(self, state: dict[str, Any], epoch: int) -> bool:
        """Evaluate the model of the current step: log it, keep it as ``best-model`` when it is the best so far.

        Args:
            state: The trainer state (step, best metric, early-stopping count, history), updated in place.
            epoch: The epoch the step belongs to, for the history.

        Returns:
            True when early stopping says to stop.

        Raises:
            Exception: whatever the evaluator raises, a ``metric_for_best_model`` missing from its metrics, or a
                failed write of ``best-model``; ``state`` is then as it was.
        """
        step = state["global_step"]
        metrics = self._evaluate()
        value = metrics[self.metric_name]
        logger.info("step %d: %s", step, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
        better = self._is_better(value, state["best_metric"])
        if better:
            # Saved before the state records anything: after a failed save the checkpoint marks this evaluation as
            # pending, and a state naming a best model that best-model does not hold would mislead the redo (early
            # stopping) and the end of the run (which loads best-model).
            with atomic_dir(self.output_dir / "best-model") as tmp:
                _quiet_save(self.model, tmp)
        state["last_metrics"] = metrics
        state["history"].append({"step": step, "epoch": epoch, **{f"eval_{k}": v for k, v in metrics.items()}})
        if better:
            state.update(best_metric=value, best_step=step, best_metrics=metrics, bad_evals=0)
            return False
        state["bad_evals"] += 1
        stop = self._patience_spent(state)
        if stop:
            logger.info("Early stopping: no improvement of %s in %d evaluations.", self.metric_name,
                        state["bad_evals"])
        return stop

    def _redo_failed_evaluation(self, state: dict[str, Any], model, optimizer, scheduler, scaler) -> None:
        """Evaluate the step whose evaluation failed in the run that wrote the resumed checkpoint, then checkpoint it
        again with the result, so best-model selection, early stopping and the model card see that evaluation.

        Raises:
            Exception: whatever the evaluator raises again (the checkpoint on disk still marks the step as pending).
        """
        pending = state["pending_eval"]
        if self.evaluator is None:
            logger.warning("The evaluation at step %d failed in the earlier run; without an evaluator now it is not "
                           "redone.", state["global_step"])
            state["pending_eval"] = None
            return
        logger.info("Redoing the evaluation of step %d, which failed in the earlier run.", state["global_step"])
        self._evaluate_step(state, pending["epoch"])
        state["pending_eval"] = None
        # The resumed checkpoint's state already points past an epoch that ended at this step.
        self._save_checkpoint(state, False, model, optimizer, scheduler, scaler)

    def _save_checkpoint(self, state, epoch_end: bool, model, optimizer, scheduler, scaler) -> None:
        """Write ``checkpoint-<step>`` of the current step, then drop checkpoints over ``save_total_limit``."""
        save_checkpoint(self.output_dir / f"checkpoint-{state['global_step']}", model, optimizer, scheduler, scaler,
                        self._checkpoint_state(state, epoch_end))
        self._rotate_checkpoints()

    def _patience_spent(self, state: dict[str, Any]) -> bool:
        patience = self.args.early_stopping_patience
        return patience is not None and state["bad_evals"] >= patience

    @staticmethod
    def _checkpoint_state(state: dict[str, Any], epoch_end: bool) -> dict[str, Any]:
        saved = dict(state)
        if epoch_end:
            saved["epoch"], saved["batch_in_epoch"] = state["epoch"] + 1, 0
        return saved

    def _maybe_resume(self, model, optimizer, scheduler, scaler) -> dict[str, Any]:
        """Load the latest readable checkpoint of this run into the given objects; return its trainer state.

        An unreadable checkpoint (truncated, corrupt) is skipped with a warning for the one before it; it is
        replaced when the run reaches its step again.

        Raises:
            ValueError: checkpoints of another run, checkpoints while ``resume=False`` and
                ``overwrite_output_dir=False``, or no readable checkpoint.
        """
        checkpoints = list_checkpoints(self.output_dir)
        if not checkpoints:
            return {}
        if not self.args.resume:
            if not self.args.overwrite_output_dir:
                raise ValueError(f"{self.output_dir} already holds checkpoints of a training run: continue it with "
                                 "resume=True (CLI: drop --no-resume), delete them with overwrite_output_dir=True "
                                 "(CLI: --overwrite-output-dir), or use a new output_dir.")
            for path in checkpoints:
                shutil.rmtree(path)
            shutil.rmtree(self.output_dir / "best-model", ignore_errors=True)
            return {}
        current = self._fingerprint()
        failure: CheckpointError | None = None
        for path in reversed(checkpoints):
            try:
                # Check before loading anything, so a refused resume leaves the model's weights untouched.
                saved = read_state(path)
                self._check_fingerprint(path, saved.get("fingerprint"), current)
                self._check_selection(path, saved)
                state = load_checkpoint(path, model, optimizer, scheduler, scaler)
            except CheckpointError as exc:
                failure = exc
                if path != checkpoints[0]:
                    logger.warning("%s Falling back to the checkpoint before it.", exc)
                continue
            logger.info("Resuming from %s (step %d).", path, state["global_step"])
            # This run's settings go into its next checkpoints (the fingerprint matched; the rest may differ).
            return {**state, "fingerprint": current, "args": self.args.to_dict(), "selection": self._selection()}
        raise CheckpointError(f"{failure} No readable checkpoint is left in {self.output_dir}: {_START_OVER}.")

    def _selection(self) -> dict[str, Any]:
        """How this run picks its best model: the metric (without the history's ``eval_`` prefix) and direction."""
        name = self.metric_name
        if name is not None and name.startswith("eval_"):  # a plain callable's metric, not yet resolved
            name = name[len("eval_"):]
        return {"metric": name, "greater_is_better": self.args.greater_is_better}

    def _check_selection(self, path: Path, saved: dict[str, Any]) -> None:
        """Refuse to resume when checkpoint ``path`` already chose a best model by another metric or direction: its
        best value and early-stopping count would be compared with values of another kind.

        Raises:
            ValueError: the checkpoint has a best step chosen by another metric or direction; the message names both.
        """
        chosen, current = saved.get("selection"), self._selection()
        # Checkpoints of older versions did not record it; a run without an evaluator now selects nothing.
        if saved.get("best_step") is None or chosen is None or self.evaluator is None or chosen == current:
            return

        def describe(selection: dict[str, Any]) -> str:
            return f"{selection['metric']} ({'higher' if selection['greater_is_better'] else 'lower'} is better)"

        raise ValueError(f"Cannot resume from {path}: its best model (step {saved['best_step']}) was chosen by "
                         f"{describe(chosen)}, this run selects by {describe(current)}. Rerun with "
                         f"metric_for_best_model={chosen['metric']!r} and greater_is_better="
                         f"{chosen['greater_is_better']} to continue it, or {_START_OVER}.")

    @staticmethod
    def _check_fingerprint(path: Path, saved: dict[str, Any] | None, current: dict[str, Any]) -> None:
        """Raise ValueError naming what differs when checkpoint ``path`` belongs to another run."""
        # Compare as stored: the JSON round trip turns tuples into lists.
        current = json.loads(json.dumps(current))
        saved = saved or {}
        if saved == current:
            return
        # Checkpoints of older versions lack fields: refused, as they cannot be shown to belong to this run.
        missing = [key for key in current if key not in saved]
        differences = [f"written by an older crossencoder that did not record {', '.join(missing)}"] if missing else []
        for key in dict.fromkeys([*current, *saved]):
            if key in missing or saved.get(key) == current.get(key):
                continue
            if key == "data_sha256":
                differences.append("the training examples differ in content")
            else:
                differences.append(f"{key} {saved.get(key)!r} there, {current.get(key)!r} now")
        raise ValueError(f"Cannot resume from {path}: it was written for other data or settings "
                         f"({'; '.join(differences)}). Rerun with the old data and settings to continue it, or "
                         f"{_START_OVER}.")

    def _finish(self, state: dict[str, Any], run_losses: list[float]) -> TrainOutput:
        best_dir = self.output_dir / "best-model"
        metrics = state["last_metrics"]
        # best_step is None when no evaluation gave a number: a best-model folder then is not this run's.
        if self.args.load_best_model_at_end and state["best_step"] not in (None, state["global_step"]) \
                and best_dir.is_dir():
            # save_pretrained shards a model over its max_shard_size: load whichever form the folder holds.
            load_model_folder(self.model.model, best_dir)
            metrics = state["best_metrics"]
        self.model.model.eval()
        final = self.output_dir / "final"
        card = render_model_card(
            base_model=self.args.base_model_name or self.model.model_name_or_path, num_labels=self.model.num_labels,
            train_data=self.args.train_data_name, num_examples=len(self.train_data), loss=self.loss.name,
            loss_config=self.loss.config(), hyperparameters=self._card_hyperparameters(state["global_step"]),
            metrics=metrics, eval_name=getattr(self.evaluator, "name", None) or None,
            id2label=self.model.id2label if self.model.num_labels > 1 else None,
        )
        with atomic_dir(final) as tmp:
            _quiet_save(self.model, tmp)
            (tmp / "README.md").write_text(card, encoding="utf-8")
        # The model in memory is now the final folder's model: /info, push_to_hub (its card) should point there.
        self.model.model_path = final.resolve()
        return TrainOutput(
            global_step=state["global_step"],
            training_loss=float(np.mean(run_losses)) if run_losses else float("nan"),
            metrics=metrics, best_metric=state["best_metric"], best_step=state["best_step"],
            model_path=final, history=state["history"],
        )

    def _card_hyperparameters(self, trained_steps: int) -> dict[str, Any]:
        a = self.args
        # Only early stopping ends a run before total_steps.
        steps = (str(self.total_steps) if trained_steps >= self.total_steps
                 else f"{trained_steps} of {self.total_steps} (early stopping)")
        return {"epochs": a.num_epochs if a.max_steps is None else f"{a.max_steps} steps", "steps": steps,
                "batch_size": a.batch_size, "gradient_accumulation_steps": a.gradient_accumulation_steps,
                "learning_rate": a.learning_rate, "warmup": f"{self._warmup_steps()} steps",
                "schedule": "linear decay", "weight_decay": a.weight_decay, "max_grad_norm": a.max_grad_norm,
                "max_length": self.model.max_length, "seed": a.seed,
                "mixed_precision": str(self.autocast_dtype).replace("torch.", "") if self.autocast_dtype else "no"}


def _examples_sha256(examples: Sequence[Any]) -> str:
    """Hex sha256 of normalised training examples (canonical JSON, one per line), so edited data is detected."""
    digest = hashlib.sha256()
    for example in examples:
        text = json.dumps(example, default=_canonical, ensure_ascii=False, sort_keys=True)
        digest.update(text.encode("utf-8") + b"\n")
    return digest.hexdigest()


def _canonical(value: Any) -> Any:
    """JSON form of what ``json`` cannot write itself: the losses' example dataclasses, else the repr."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.astuple(value)
    return repr(value)


def _quiet_save(model: CrossEncoder, path: Path) -> None:
    """Save without transformers' per-shard progress bar, which would garble the training bar."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save(path)
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _native_bf16(device: torch.device) -> bool:
    """Whether the GPU at ``device`` computes in bfloat16 natively.

    Before Ampere (compute capability 8.0), torch emulates bfloat16, slower than float32, and its default check
    counts that as support.

    Args:
        device: A CUDA (or ROCm) device.

    Returns:
        True on ROCm and on CUDA GPUs of compute capability 8.0 and up.
    """
    with torch.cuda.device(device):
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:
            # torch < 2.4 has no including_emulation and always counts emulation: check what it checks natively.
            return bool(torch.version.hip) or torch.cuda.get_device_capability(device)[0] >= 8
