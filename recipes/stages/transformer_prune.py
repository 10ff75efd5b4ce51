"""Structured pruning of a transformer encoder: whole attention heads, feed-forward channels and
token-table rows removed, the tensors really shrinking (torch-pruning's functional pruners).

It works on Hugging Face BERT-style layers: a module with `attention.self.{query,key,value}`,
`attention.output.dense`, `intermediate.dense` and `output.dense` (BERT, MiniLM, RoBERTa,
ELECTRA, …). The hidden width stays: the model's output is compared with the teacher's vectors,
and the residual stream ties every layer to it.

- A **head** h of a layer is the h-th `head_size` rows of query, key and value and the same
  columns of the output projection; removing it removes all four. The attention reshapes with
  -1 heads, so a layer runs with the heads it has left.
- A **feed-forward channel** j is row j of `intermediate.dense` and column j of `output.dense`.
- **Importance** `magnitude`: the L2 norm of a unit's weights (rows in, columns out).
  `activation`: its mean output over the real (unpadded) tokens of the training split (a head's
  context-vector norm, a channel's |activation|), times the norm of the output weights that
  read it: what the unit actually contributes on the text (the activation-based ranking of
  Minitron, Muralidharan et al. 2024, with Wanda's weight factor).
- **Vocabulary trimming** keeps the token-table rows of the tokens the training text uses and
  maps every other token to the unknown token's row (`models.RemappedEmbedding`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from compressgate.recipes.data import Padding, trim
from compressgate.recipes.models import RemappedEmbedding


@dataclass
class Block:
    """One transformer layer's prunable parts."""

    name: str
    attention: nn.Module  # has query, key, value
    projection: nn.Linear  # attention.output.dense: reads the heads' context vectors
    expand: nn.Linear  # intermediate.dense
    contract: nn.Linear  # output.dense: reads the feed-forward channels
    head_size: int

    @property
    def heads(self) -> int:
        return self.projection.in_features // self.head_size

    @property
    def channels(self) -> int:
        return self.expand.out_features


def blocks(module: nn.Module) -> list[Block]:
    """The BERT-style layers of `module`, in order (none: it is not such a transformer)."""
    found = []
    for name, layer in module.named_modules():
        attention = getattr(layer, "attention", None)
        self_attention = getattr(attention, "self", None)
        projection = getattr(getattr(attention, "output", None), "dense", None)
        expand = getattr(getattr(layer, "intermediate", None), "dense", None)
        contract = getattr(getattr(layer, "output", None), "dense", None)
        linears = [getattr(self_attention, n, None) for n in ("query", "key", "value")]
        linears += [projection, expand, contract]
        size = getattr(self_attention, "attention_head_size", None)
        if all(isinstance(m, nn.Linear) for m in linears) and isinstance(size, int):
            assert isinstance(projection, nn.Linear) and self_attention is not None
            assert isinstance(expand, nn.Linear) and isinstance(contract, nn.Linear)
            found.append(Block(name, self_attention, projection, expand, contract, size))
    return found


def _weight(layer: nn.Module, name: str) -> torch.Tensor:
    linear = getattr(layer, name)
    assert isinstance(linear, nn.Linear)
    return linear.weight.detach()


def magnitude_scores(block: Block) -> tuple[torch.Tensor, torch.Tensor]:
    """(per head, per channel) L2 norms of each unit's weights in and out."""
    size = block.head_size
    rows = sum(_weight(block.attention, n).pow(2).sum(dim=1) for n in ("query", "key", "value"))
    rows = rows + block.projection.weight.detach().pow(2).sum(dim=0)
    heads = rows.reshape(-1, size).sum(dim=1).sqrt()
    channels = (
        block.expand.weight.detach().pow(2).sum(dim=1)
        + block.contract.weight.detach().pow(2).sum(dim=0)
    ).sqrt()
    return heads, channels


@torch.no_grad()
def activation_scores(
    module: nn.Module,
    found: list[Block],
    x: torch.Tensor,
    padding: Padding | None,
    batch_size: int,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(per head, per channel) mean activation over the real tokens of `x` (every position
    when the data declares no padding), times the norm of the output weights reading each
    unit."""
    heads = [torch.zeros(b.heads) for b in found]
    channels = [torch.zeros(b.channels) for b in found]
    tokens = [torch.zeros(()) for _ in found]
    mask: list[torch.Tensor | None] = [None]

    def real(features: torch.Tensor) -> torch.Tensor:  # (N, L, 1): 1 on a real token
        current = mask[0]
        return (torch.ones(features.shape[:2]) if current is None else current).unsqueeze(-1)

    def head_hook(index: int, size: int) -> Any:
        def hook(layer: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            context = inputs[0]  # (N, L, heads · size)
            norms = context.reshape(*context.shape[:-1], -1, size).norm(dim=-1)  # (N, L, heads)
            weights = real(context)
            heads[index] += (norms * weights).sum(dim=(0, 1))
            tokens[index] += weights.sum()

        return hook

    def channel_hook(index: int) -> Any:
        def hook(layer: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            channels[index] += (inputs[0].abs() * real(inputs[0])).sum(dim=(0, 1))

        return hook

    handles = []
    for i, block in enumerate(found):
        handles.append(block.projection.register_forward_pre_hook(head_hook(i, block.head_size)))
        handles.append(block.contract.register_forward_pre_hook(channel_hook(i)))
    module.eval()
    try:
        for start in range(0, len(x), batch_size):
            batch = x[start : start + batch_size]
            if padding is not None:
                batch = trim(batch, padding)
                mask[0] = (batch[:, padding.mask_channel] != 0).to(torch.float32)
            module(batch)
    finally:
        for handle in handles:
            handle.remove()
    scores = []
    for i, block in enumerate(found):
        count = tokens[i].clamp(min=1)
        out_heads = block.projection.weight.detach().pow(2).sum(dim=0)
        out_heads = out_heads.reshape(-1, block.head_size).sum(dim=1).sqrt()
        out_channels = block.contract.weight.detach().norm(dim=0)
        scores.append((heads[i] / count * out_heads, channels[i] / count * out_channels))
    return scores


def remove_heads(block: Block, heads: list[int]) -> None:
    """Remove the attention heads `heads` (indices among the block's current heads)."""
    import torch_pruning as tp

    if not heads:
        return
    size = block.head_size
    rows = [h * size + i for h in sorted(heads) for i in range(size)]
    for name in ("query", "key", "value"):
        tp.prune_linear_out_channels(getattr(block.attention, name), rows)
    tp.prune_linear_in_channels(block.projection, rows)
    for attr in ("num_attention_heads", "all_head_size"):
        if hasattr(block.attention, attr):  # kept true for code that reads them
            value = block.heads if attr == "num_attention_heads" else block.heads * size
            setattr(block.attention, attr, value)


def remove_channels(block: Block, channels: list[int]) -> None:
    """Remove the feed-forward channels `channels`."""
    import torch_pruning as tp

    if not channels:
        return
    tp.prune_linear_out_channels(block.expand, sorted(channels))
    tp.prune_linear_in_channels(block.contract, sorted(channels))


def lowest(scores: torch.Tensor, count: int) -> list[int]:
    """The `count` lowest-scoring indices (ties: the lower index goes first)."""
    order = sorted(range(len(scores)), key=lambda i: (float(scores[i]), i))
    return sorted(order[:count])


@contextmanager
def _inputs_of(layer: nn.Module, seen: list[torch.Tensor]) -> Iterator[None]:
    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        seen.append(torch.unique(inputs[0]))

    handle = layer.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@torch.no_grad()
def used_tokens(
    module: nn.Module, table: nn.Embedding, x: torch.Tensor, padding: Padding | None
) -> torch.Tensor:
    """The sorted token ids `table` is asked for when `module` runs on `x`."""
    seen: list[torch.Tensor] = []
    module.eval()
    with _inputs_of(table, seen):
        for start in range(0, len(x), 256):
            batch = x[start : start + 256]
            module(batch if padding is None else trim(batch, padding))
    return torch.unique(torch.cat(seen)) if seen else torch.empty(0, dtype=torch.int64)


def trim_vocabulary(
    module: nn.Module, path: str, keep: torch.Tensor, unknown: int
) -> RemappedEmbedding:
    """Replace the embedding at `path` by its rows `keep` (and the unknown token's)."""
    table = module.get_submodule(path)
    assert isinstance(table, nn.Embedding)
    rows = torch.unique(torch.cat([keep, torch.tensor([unknown])]))
    trimmed = RemappedEmbedding.trim(table, rows, unknown)
    parent_name, _, leaf = path.rpartition(".")
    setattr(module.get_submodule(parent_name), leaf, trimmed)
    return trimmed
