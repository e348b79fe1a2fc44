"""Skip the work the classification head never reads: the last encoder layer computed for the first token only.

A sequence-classification head of the BERT family reads one position of the last layer: the first token
(``[CLS]`` / ``<s>``). Every other position of that layer is computed and thrown away, which for a 6-layer model
is about a sixth of the work per pair. :class:`FirstTokenClassifier` runs the first ``L - 1`` layers as usual,
then the last layer with its queries, attention output, feed-forward block and layer norms on the first token
only (keys and values still cover every token, so the result is the same up to float rounding). The ONNX export
uses it where it applies and checks its logits against the full model before keeping it.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import PreTrainedModel

# Model types whose encoder layer is BERT's post-layer-norm block (query/key/value, attention.output, intermediate,
# output) and whose classification head reads only the first token of the last layer.
SUPPORTED_TYPES = {"bert", "roberta", "xlm-roberta", "camembert", "electra"}


def supports_first_token(model: PreTrainedModel) -> bool:
    """Whether :class:`FirstTokenClassifier` applies to ``model`` (a BERT-family classifier, absolute positions)."""
    config = model.config
    if config.model_type not in SUPPORTED_TYPES or getattr(config, "is_decoder", False):
        return False
    if getattr(config, "position_embedding_type", "absolute") not in (None, "absolute"):
        return False
    layers = getattr(getattr(model.base_model, "encoder", None), "layer", None)
    if not layers or not isinstance(getattr(model, "classifier", None), nn.Module):
        return False
    last = layers[-1]
    return all(hasattr(last, name) for name in ("attention", "intermediate", "output")) and all(
        hasattr(last.attention.self, name) for name in ("query", "key", "value")
    )


class FirstTokenClassifier(nn.Module):
    """A sequence classifier whose last encoder layer is computed for the first token only.

    Args:
        model: A model for which :func:`supports_first_token` is true, in eval mode.

    Example:
        >>> logits = FirstTokenClassifier(model)(input_ids, attention_mask, token_type_ids)
    """

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        if not supports_first_token(model):
            raise ValueError(f"First-token inference does not apply to model type {model.config.model_type!r}.")
        self.model = model
        self.base = model.base_model
        self.last = self.base.encoder.layer[-1]
        self.num_heads = int(model.config.num_attention_heads)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        # hidden_states[-2] is the input of the last layer; the exporter drops the unused full last layer.
        hidden = self.base(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
                           return_dict=True, **kwargs).hidden_states[-2]
        first = self._last_layer_first_token(hidden, attention_mask)
        return self._head(first)

    def _last_layer_first_token(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        attention = self.last.attention
        batch, length, width = hidden.shape
        head_dim = width // self.num_heads
        first = hidden[:, :1]
        query = attention.self.query(first).view(batch, 1, self.num_heads, head_dim).transpose(1, 2)
        key = attention.self.key(hidden).view(batch, length, self.num_heads, head_dim).transpose(1, 2)
        value = attention.self.value(hidden).view(batch, length, self.num_heads, head_dim).transpose(1, 2)
        scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(head_dim)
        padding = (1.0 - attention_mask[:, None, None, :].to(scores.dtype)) * torch.finfo(scores.dtype).min
        context = torch.matmul(torch.softmax(scores + padding, dim=-1), value)
        context = context.transpose(1, 2).reshape(batch, 1, width)
        attended = attention.output.LayerNorm(attention.output.dense(context) + first)
        output = self.last.output
        return output.LayerNorm(output.dense(self.last.intermediate(attended)) + attended)

    def _head(self, first: torch.Tensor) -> torch.Tensor:
        """The model's own classification head, fed a length-1 sequence (heads read position 0 only)."""
        pooler = getattr(self.base, "pooler", None)
        if isinstance(self.model.classifier, nn.Linear):  # BERT: pooler (dense + tanh on [CLS]), then a linear layer
            if pooler is None:
                raise ValueError("A BERT-style classifier needs the base model's pooler.")
            return self.model.classifier(pooler(first))
        return self.model.classifier(first)  # RoBERTa / ELECTRA heads index [:, 0, :] themselves
