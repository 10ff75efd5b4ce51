"""Pruning, gradual over `rounds` with fine-tuning between them.

- `magnitude`: unstructured L1 pruning with `torch.nn.utils.prune`, over all weights at once
  (`scope: global`) or layer by layer (`scope: layer`). Round r reaches r/rounds of the target
  sparsity; masks stay on while fine-tuning (pruned weights stay zero) and are made permanent
  at the end. Tensors keep their shape: the gain shows once the weights are compressed or run
  by a sparse kernel.
- `structured`: whole channels and neurons removed with torch-pruning's dependency graph, so
  the tensors really shrink (and so do the file and the MACs). `sparsity` is the fraction of
  channels removed from each prunable layer (torch-pruning's `pruning_ratio`); the output
  layer and the `skip` layers keep all of theirs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from compressgate.recipes import models
from compressgate.recipes.manifest import PruneSpec
from compressgate.recipes.models import TorchModel, Variant
from compressgate.recipes.stages.base import STAGES, Stage, StageContext

_PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@STAGES.register("prune")
class Prune(Stage[PruneSpec]):
    kind = "prune"

    def apply(self, model: Variant, spec: PruneSpec, ctx: StageContext) -> Variant:
        incoming = self.torch_input(model, ctx)
        module = incoming.module
        layers: dict[str, nn.Module] = {
            name: m for name, m in module.named_modules() if isinstance(m, _PRUNABLE)
        }
        if not layers:
            raise ctx.error("the model has no Conv or Linear layer to prune")
        unknown = [name for name in spec.skip if name not in layers]
        if unknown:
            raise ctx.error(
                f"skip: unknown layer {', '.join(repr(n) for n in unknown)}; prunable layers: "
                f"{', '.join(layers)}",
                hint="layer names are the module paths of model.named_modules()",
            )
        before = models.parameter_count(module)
        example = ctx.splits.train.x[:2]
        if spec.method == "structured":
            rounds = self._structured(module, layers, spec, ctx, example)
            after = models.parameter_count(module)
            achieved = 1 - after / before
        else:
            rounds = self._magnitude(module, layers, spec, ctx)
            after = models.parameter_count(module)
            achieved = 1 - models.nonzero_parameter_count(module) / before
        ctx.record(
            method=spec.method,
            target_sparsity=spec.sparsity,
            achieved_sparsity=round(achieved, 6),
            params_before=before,
            params_after=after,
            nonzero_params=models.nonzero_parameter_count(module),
            rounds=rounds,
        )
        return TorchModel(module, incoming.factory, incoming.args)

    def _finetune(self, module: nn.Module, spec: PruneSpec, ctx: StageContext, r: int) -> None:
        if spec.finetune_epochs == 0:
            return
        ctx.fit(
            module,
            description=f"prune round {r + 1}/{spec.rounds}: fine-tune",
            purpose=f"finetune-{r}",
            epochs=spec.finetune_epochs,
            lr=spec.lr,
            batch_size=spec.batch_size,
        )

    def _structured(
        self,
        module: nn.Module,
        layers: dict[str, nn.Module],
        spec: PruneSpec,
        ctx: StageContext,
        example: torch.Tensor,
    ) -> list[dict[str, Any]]:
        import torch_pruning as tp

        output_layer = list(layers.values())[-1]
        ignored = [output_layer, *(layers[name] for name in spec.skip)]
        pruner = tp.pruner.MagnitudePruner(
            module,
            example,
            importance=tp.importance.MagnitudeImportance(p=2),
            pruning_ratio=spec.sparsity,
            iterative_steps=spec.rounds,
            ignored_layers=ignored,
            global_pruning=spec.scope == "global",
        )
        rounds = []
        for r in range(spec.rounds):
            pruner.step()
            self._finetune(module, spec, ctx, r)
            rounds.append({"round": r + 1, "params": models.parameter_count(module)})
        return rounds

    def _magnitude(
        self, module: nn.Module, layers: dict[str, nn.Module], spec: PruneSpec, ctx: StageContext
    ) -> list[dict[str, Any]]:
        targets = [(m, "weight") for name, m in layers.items() if name not in spec.skip]
        rounds = []
        reached = 0.0
        for r in range(spec.rounds):
            goal = spec.sparsity * (r + 1) / spec.rounds
            # Each call prunes a share of the weights still unpruned.
            amount = (goal - reached) / (1 - reached)
            if spec.scope == "global":
                torch_prune.global_unstructured(
                    targets, pruning_method=torch_prune.L1Unstructured, amount=amount
                )
            else:
                for target, name in targets:
                    torch_prune.l1_unstructured(target, name, amount=amount)  # type: ignore[no-untyped-call]
            reached = goal
            self._finetune(module, spec, ctx, r)
            weights = [_weight(m) for m, _ in targets]
            zeros = sum(int((w == 0).sum()) for w in weights)
            total = sum(w.numel() for w in weights)
            rounds.append({"round": r + 1, "weight_sparsity": round(zeros / total, 6)})
        for target, name in targets:
            torch_prune.remove(target, name)  # type: ignore[no-untyped-call]
        return rounds


def _weight(module: nn.Module) -> torch.Tensor:
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    return weight
