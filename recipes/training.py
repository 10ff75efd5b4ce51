"""The one training loop every stage uses: deterministic in its seed, nothing global.

Adam with a cosine-annealed learning rate over all steps; batches drawn from a permutation made
by a `torch.Generator` seeded from the caller's seed, so the same seed gives the same weights
on the same machine (with deterministic algorithms and a fixed thread count, which the executor
sets).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from compressgate.recipes.data import Padding, Split, trim

# (model, inputs, labels, epoch) -> loss
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, int], torch.Tensor]


class Ticker(Protocol):
    def advance(self, steps: int = 1) -> None: ...


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epoch: int) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def class_weights(split: Split) -> torch.Tensor | None:
    """The split's class weights as the `weight` of `F.cross_entropy` (None: unweighted)."""
    if split.class_weights is None:
        return None
    return torch.tensor(split.class_weights, dtype=torch.float32)


def weighted_cross_entropy(weight: torch.Tensor | None) -> LossFn:
    """Cross-entropy with class weights; plain `cross_entropy` when `weight` is None."""
    if weight is None:
        return cross_entropy

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epoch: int) -> torch.Tensor:
        return F.cross_entropy(model(x), y, weight=weight)

    return loss


def fit(
    model: nn.Module,
    split: Split,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    loss: LossFn | None = None,
    extra_parameters: tuple[nn.Parameter, ...] = (),
    ticker: Ticker | None = None,
    padding: Padding | None = None,
) -> nn.Module:
    """Train `model` in place for `epochs` over `split`; returns it in eval mode.

    The default loss is cross-entropy, weighted by the split's class weights when it has them.
    With `padding` (the splits' declaration), each batch is trimmed to its longest sample, and
    each epoch's permutation is cut into runs of `GROUP` batches whose samples are ordered by
    length, the batches then shuffled: a batch holds samples of similar lengths and trims more
    (the grouping of Hugging Face's `group_by_length`).
    """
    if len(split) == 0:
        raise ValueError("the training split is empty")
    if loss is None:
        loss = weighted_cross_entropy(class_weights(split))
    generator = torch.Generator().manual_seed(seed)
    parameters = [p for p in model.parameters() if p.requires_grad] + list(extra_parameters)
    optimizer = torch.optim.Adam(parameters, lr=lr)
    steps_per_epoch = -(-len(split) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    model.train()
    lengths = None if padding is None else _lengths(split.x, padding)
    for epoch in range(epochs):
        order = torch.randperm(len(split), generator=generator)
        for rows in _batches(order, batch_size, lengths, generator):
            optimizer.zero_grad()
            x = split.x[rows] if padding is None else trim(split.x[rows], padding)
            value = loss(model, x, split.y[rows], epoch)
            value.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            schedule.step()
        if ticker is not None:
            ticker.advance()
    model.eval()
    return model


GROUP = 8


def _lengths(x: torch.Tensor, padding: Padding) -> torch.Tensor:
    """Each sample's length: the last real position of its mask, plus one."""
    mask = x[:, padding.mask_channel].movedim(padding.axis - 1, -1)
    used = (mask != 0).reshape(len(x), -1, mask.shape[-1]).any(dim=1)
    positions = torch.arange(1, used.shape[-1] + 1)
    return (used * positions).amax(dim=-1)


def _batches(
    order: torch.Tensor,
    batch_size: int,
    lengths: torch.Tensor | None,
    generator: torch.Generator,
) -> list[torch.Tensor]:
    if lengths is None:
        return list(torch.split(order, batch_size))
    batches: list[torch.Tensor] = []
    for run in torch.split(order, batch_size * GROUP):
        # A stable sort: equal lengths keep the permutation's order.
        ranked = run[torch.sort(lengths[run], stable=True).indices]
        batches.extend(torch.split(ranked, batch_size))
    shuffle = torch.randperm(len(batches), generator=generator)
    return [batches[i] for i in shuffle.tolist()]


@torch.no_grad()
def predict(
    model: nn.Module, x: torch.Tensor, batch_size: int = 1024, padding: Padding | None = None
) -> torch.Tensor:
    """Logits of `model` on `x`, in eval mode, batch by batch (padded ones trimmed, 64 a
    batch: a padded batch is as long as its longest sample)."""
    model.eval()
    if padding is not None:
        batch_size = min(batch_size, PADDED_BATCH)
    outputs = [
        model(x[i : i + batch_size] if padding is None else trim(x[i : i + batch_size], padding))
        for i in range(0, len(x), batch_size)
    ]
    return torch.cat(outputs) if outputs else torch.empty(0)


PADDED_BATCH = 64


def embedding_loss(*, cosine: float, mse: float) -> LossFn:
    """`cosine` · (1 − cos(model(x), y)) + `mse` · MSE(model(x), y), y the target vectors."""

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epoch: int) -> torch.Tensor:
        out = model(x)
        value = torch.zeros(())
        if cosine:
            value = value + cosine * (1 - F.cosine_similarity(out, y, dim=-1)).mean()
        if mse:
            value = value + mse * F.mse_loss(out, y)
        return value

    return loss


def cosine_distance(
    model: nn.Module, x: torch.Tensor, targets: torch.Tensor, padding: Padding | None
) -> float:
    """Mean 1 − cosine between `model`'s vectors of `x` and `targets`."""
    got = predict(model, x, padding=padding)
    return float((1 - F.cosine_similarity(got, targets, dim=-1)).mean())
