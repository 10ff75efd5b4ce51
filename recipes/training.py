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

from compressgate.recipes.data import Split

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
) -> nn.Module:
    """Train `model` in place for `epochs` over `split`; returns it in eval mode.

    The default loss is cross-entropy, weighted by the split's class weights when it has them.
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
    for epoch in range(epochs):
        order = torch.randperm(len(split), generator=generator)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            optimizer.zero_grad()
            value = loss(model, split.x[rows], split.y[rows], epoch)
            value.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            schedule.step()
        if ticker is not None:
            ticker.advance()
    model.eval()
    return model


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits of `model` on `x`, in eval mode, batch by batch."""
    model.eval()
    outputs = [model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return torch.cat(outputs) if outputs else torch.empty(0)
