"""Teacher-blended soft labels: the least-squares mapping, the blend, the bi-encoder cosine and bad input."""

from __future__ import annotations

import re

import numpy as np
import pytest

from crossencoder.training import bi_encoder_similarity, blend_teacher_labels

EXAMPLES = [("a", "b", 0.0), ("c", "d", 0.0), ("e", "f", 1.0), ("g", "h", 1.0)]


def test_blend_maps_teacher_onto_label_scale_clips_and_mixes():
    # Least squares of gold on teacher [0, 1, 2, 3]: slope 0.4, intercept -0.1 -> [-0.1, 0.3, 0.7, 1.1],
    # clipped to [0, 0.3, 0.7, 1]; half gold + half that = [0, 0.15, 0.85, 1].
    blended = blend_teacher_labels(EXAMPLES, [0.0, 1.0, 2.0, 3.0], weight=0.5)
    assert [(a, b) for a, b, _ in blended] == [(a, b) for a, b, _ in EXAMPLES]
    assert [y for *_, y in blended] == pytest.approx([0.0, 0.15, 0.85, 1.0])


def test_blend_is_invariant_to_the_teacher_scale_and_weight_ends():
    raw = blend_teacher_labels(EXAMPLES, [0.0, 1.0, 2.0, 3.0], weight=0.3)
    shifted = blend_teacher_labels(EXAMPLES, [10.0, 30.0, 50.0, 70.0], weight=0.3)  # affine change of the teacher
    assert [y for *_, y in shifted] == pytest.approx([y for *_, y in raw])
    assert [y for *_, y in blend_teacher_labels(EXAMPLES, [0.0, 1.0, 2.0, 3.0], weight=0.0)] == [0.0, 0.0, 1.0, 1.0]
    assert [y for *_, y in blend_teacher_labels(EXAMPLES, [0.0, 1.0, 2.0, 3.0], weight=1.0)] == \
        pytest.approx([0.0, 0.3, 0.7, 1.0])


def test_blend_accepts_dict_examples():
    rows = [{"text_a": a, "text_b": b, "label": y} for a, b, y in EXAMPLES]
    assert blend_teacher_labels(rows, [0.0, 1.0, 2.0, 3.0])[1] == ("c", "d", pytest.approx(0.15))


@pytest.mark.parametrize(
    ("examples", "teacher", "weight", "message"),
    [
        (EXAMPLES, [0.0, 1.0, 2.0, 3.0], 1.5, "weight must be in [0, 1]"),
        (EXAMPLES, [0.0, 1.0], 0.5, "got 4 examples and teacher scores of shape (2,)"),
        (EXAMPLES, [[0.0], [1.0], [2.0], [3.0]], 0.5, "got 4 examples and teacher scores of shape (4, 1)"),
        # A NaN cosine (a zero embedding) failed deep in LAPACK: "SVD did not converge in Linear Least Squares".
        (EXAMPLES, [0.0, float("nan"), 2.0, 3.0], 0.5, "teacher_scores[1] is nan: teacher scores must be finite"),
        (EXAMPLES, [0.2] * 4, 0.5, "all equal"),
        ([("a", "b", 4.0), ("c", "d", 0.0)], [0.0, 1.0], 0.5, "data[0] label 4.0 is outside [0, 1]"),
        ([("a", "b", "entailment"), ("c", "d", 0.0)], [0.0, 1.0], 0.5, "data[0] needs a numeric label"),
    ],
)
def test_blend_rejects_bad_input(examples, teacher, weight, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        blend_teacher_labels(examples, teacher, weight)


class FakeEncoder:
    """Fixed unit vectors per text, so the cosines are known."""

    VECTORS = {"x": [1.0, 0.0], "y": [0.0, 1.0], "xy": [0.6, 0.8]}

    def __init__(self):
        self.seen = []

    def encode(self, texts, batch_size=64, show_progress_bar=None, normalize=True):
        self.seen += texts
        return np.array([self.VECTORS[t] for t in texts], dtype=np.float32)


def test_bi_encoder_similarity_is_the_pairwise_cosine():
    encoder = FakeEncoder()
    cos = bi_encoder_similarity([("x", "xy", 1.0), ("y", "xy", 0.5), ("x", "y", 0.0)], encoder)
    assert cos == pytest.approx([0.6, 0.8, 0.0])
    assert sorted(encoder.seen) == ["x", "xy", "y"]  # each distinct text is embedded once


def test_bi_encoder_similarity_with_the_real_minilm_ranks_paraphrases_higher():
    cos = bi_encoder_similarity([("A man is playing a guitar.", "A man plays the guitar.", 1.0),
                                 ("A man is playing a guitar.", "The stock market fell sharply.", 0.0)])
    assert cos[0] > 0.8 and cos[1] < 0.3
