"""Fine-tune cross-encoders: losses, the :class:`Trainer`, hard-negative mining and score calibration.

Example:
    >>> from crossencoder import CrossEncoder
    >>> from crossencoder.training import Trainer, TrainingArguments
    >>> model = CrossEncoder("path/to/all-MiniLM-L6-v2", num_labels=1)   # plain encoder: a fresh 1-label head
    >>> Trainer(model, [("A plane is taking off.", "An air plane is taking off.", 1.0), ...], loss="bce",
    ...         args=TrainingArguments("runs/sts", num_epochs=2)).train()
"""

from crossencoder.training.calibration import CalibrationReport, calibrate, fit_calibration, save_calibration
from crossencoder.training.distillation import bi_encoder_similarity, blend_teacher_labels
from crossencoder.training.losses import (
    BinaryCrossEntropyLoss,
    CrossEntropyLoss,
    ListNetLoss,
    Loss,
    MarginMSELoss,
    MSELoss,
    MultipleNegativesRankingLoss,
    get_loss,
)
from crossencoder.training.mining import flatten_ranking, group_pairs, mine_hard_negatives
from crossencoder.training.trainer import Trainer, TrainingArguments, TrainOutput

__all__ = [
    "BinaryCrossEntropyLoss",
    "CalibrationReport",
    "CrossEntropyLoss",
    "ListNetLoss",
    "Loss",
    "MSELoss",
    "MarginMSELoss",
    "MultipleNegativesRankingLoss",
    "TrainOutput",
    "Trainer",
    "TrainingArguments",
    "bi_encoder_similarity",
    "blend_teacher_labels",
    "calibrate",
    "fit_calibration",
    "flatten_ranking",
    "group_pairs",
    "get_loss",
    "mine_hard_negatives",
    "save_calibration",
]
