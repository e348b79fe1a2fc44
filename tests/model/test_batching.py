import pytest
import torch

from crossencoder.model.batching import pad_batch, token_budget_batches


def test_batches_respect_budget_and_size():
    lengths = [5, 40, 12, 40, 7, 3, 30, 30]
    batches = list(token_budget_batches(lengths, batch_size=3, max_batch_tokens=80))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 3
        longest = max(lengths[i] for i in batch)
        assert lengths[batch[0]] == longest  # longest first: padded size is len * first
        assert len(batch) == 1 or len(batch) * longest <= 80


def test_single_overbudget_item_still_forms_a_batch():
    assert list(token_budget_batches([100, 1], batch_size=8, max_batch_tokens=10)) == [[0], [1]]


def test_no_budget_means_fixed_size_sorted():
    assert list(token_budget_batches([1, 2, 3, 4, 5], batch_size=2, max_batch_tokens=None)) == [[4, 3], [2, 1], [0]]


@pytest.mark.parametrize("bs, budget", [(0, None), (2, 0)])
def test_invalid_sizes(bs, budget):
    with pytest.raises(ValueError):
        list(token_budget_batches([1], batch_size=bs, max_batch_tokens=budget))


def test_pad_batch_right_and_left():
    encs = [{"input_ids": [1, 2, 3], "token_type_ids": [0, 0, 1]}, {"input_ids": [4], "token_type_ids": [0]}]
    right = pad_batch(encs, pad_token_id=9)
    assert right["input_ids"].tolist() == [[1, 2, 3], [4, 9, 9]]
    assert right["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert right["token_type_ids"].tolist() == [[0, 0, 1], [0, 0, 0]]
    left = pad_batch(encs, pad_token_id=9, padding_side="left")
    assert left["input_ids"].tolist() == [[1, 2, 3], [9, 9, 4]]
    assert left["attention_mask"].dtype == torch.long
