"""Pruning, gradual over `rounds` with fine-tuning between them.

- `magnitude`: unstructured L1 pruning with `torch.nn.utils.prune`, over all weights at once
  (`scope: global`) or layer by layer (`scope: layer`). Round r reaches r/rounds of the target
  sparsity; masks stay on while fine-tuning (pruned weights stay zero) and are made permanent
  at the end. Tensors keep their shape: the gain shows once the weights are compressed or run
  by a sparse kernel.
- `structured`: whole channels and neurons removed with torch-pruning's dependency graph, so
  the tensors really shrink (and so do the file and the MACs). `sparsity` is the fraction of
  channels removed from each prunable layer (torch-pruning's `pruning_ratio`); the output
  layer and the `skip` layers keep all of theirs. On a transformer encoder it removes whole
  attention heads (`heads`) and feed-forward channels (`sparsity`), and can trim the token
  table (`vocabulary`): `transformer_prune`.

An embedding model (`model.task: embedding`) has no labels to fine-tune on: it learns the
vectors the incoming model gave its training text before pruning (cosine distance).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from compressgate.recipes import models, training
from compressgate.recipes.data import Split
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
        self._targets: Split | None = None
        if ctx.task == "embedding" and spec.finetune_epochs:
            # What to stay close to: the incoming model's vectors, before any pruning.
            train = ctx.splits.train
            vectors = training.predict(module, train.x, padding=ctx.splits.padding)
            self._targets = Split(train.x, vectors, ids=train.ids)
        from compressgate.recipes.stages import transformer_prune

        found = transformer_prune.blocks(module) if spec.method == "structured" else []
        if (
            spec.heads or spec.vocabulary is not None or spec.importance == "activation"
        ) and not found:
            raise ctx.error(
                "heads, vocabulary and activation importance prune a transformer encoder, "
                "and this model has no BERT-style layer (attention.self.query/key/value, "
                "attention.output.dense, intermediate.dense, output.dense)",
                hint="prune channels with 'method: structured' alone",
            )
        if found:
            return self._transformer(incoming, found, spec, ctx)
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
        options: dict[str, Any] = {}
        if self._targets is not None:
            options = {
                "split": self._targets,
                "loss": training.embedding_loss(cosine=1.0, mse=0.0),
            }
        ctx.fit(
            module,
            description=f"prune round {r + 1}/{spec.rounds}: fine-tune",
            purpose=f"finetune-{r}",
            epochs=spec.finetune_epochs,
            lr=spec.lr,
            batch_size=spec.batch_size,
            **options,
        )

    def _transformer(
        self, incoming: TorchModel, found: list[Any], spec: PruneSpec, ctx: StageContext
    ) -> Variant:
        """Heads, feed-forward channels and (optionally) token-table rows removed."""
        from compressgate.recipes.stages import transformer_prune as tp_

        module = incoming.module
        padding = ctx.splits.padding
        train = ctx.splits.train
        before = models.parameter_count(module)
        swaps = dict(incoming.swaps)
        details: dict[str, Any] = {}
        if spec.vocabulary is not None:
            details |= self._vocabulary(module, spec, ctx)
            swaps[spec.vocabulary.layer] = "remapped-embedding"
        heads0 = [b.heads for b in found]
        channels0 = [b.channels for b in found]
        rounds = []
        for r in range(spec.rounds):
            share = (r + 1) / spec.rounds
            if spec.importance == "activation":
                scores = tp_.activation_scores(module, found, train.x, padding, spec.batch_size)
            else:
                scores = [tp_.magnitude_scores(b) for b in found]
            for block, h0, c0, (head_scores, channel_scores) in zip(
                found, heads0, channels0, scores, strict=True
            ):
                # Cumulative goals, at least one head and one channel left.
                heads_goal = min(h0 - 1, round(spec.heads * h0 * share))
                channels_goal = min(c0 - 1, round(spec.sparsity * c0 * share))
                tp_.remove_heads(block, tp_.lowest(head_scores, heads_goal - (h0 - block.heads)))
                tp_.remove_channels(
                    block, tp_.lowest(channel_scores, channels_goal - (c0 - block.channels))
                )
            self._finetune(module, spec, ctx, r)
            rounds.append(
                {
                    "round": r + 1,
                    "params": models.parameter_count(module),
                    "heads": [b.heads for b in found],
                    "channels": [b.channels for b in found],
                }
            )
        after = models.parameter_count(module)
        if self._targets is not None:
            distance = training.cosine_distance(module, train.x, self._targets.y, padding)
            details["train_mean_cosine"] = round(1 - distance, 6)
        ctx.record(
            method="structured",
            target_sparsity=spec.sparsity,
            heads_share=spec.heads,
            importance=spec.importance,
            achieved_sparsity=round(1 - after / before, 6),
            params_before=before,
            params_after=after,
            nonzero_params=models.nonzero_parameter_count(module),
            layers=[b.name for b in found],
            heads_before=heads0,
            heads_after=[b.heads for b in found],
            channels_before=channels0,
            channels_after=[b.channels for b in found],
            rounds=rounds,
            **details,
        )
        return TorchModel(module, incoming.factory, incoming.args, swaps)

    def _vocabulary(self, module: nn.Module, spec: PruneSpec, ctx: StageContext) -> dict[str, Any]:
        from compressgate.recipes.stages import transformer_prune as tp_

        vocabulary = spec.vocabulary
        assert vocabulary is not None
        names = dict(module.named_modules())
        table = names.get(vocabulary.layer)
        if not isinstance(table, nn.Embedding):
            embeddings = [n for n, m in names.items() if isinstance(m, nn.Embedding)]
            raise ctx.error(
                f"vocabulary.layer: {vocabulary.layer!r} is not an nn.Embedding of the model; "
                f"its embeddings: {', '.join(embeddings) or 'none'}",
                hint="name the token table's module path",
            )
        if not 0 <= vocabulary.unknown_id < table.num_embeddings:
            raise ctx.error(
                f"vocabulary.unknown_id {vocabulary.unknown_id} is not a row of "
                f"{vocabulary.layer} ({table.num_embeddings} rows)"
            )
        padding = ctx.splits.padding
        used = tp_.used_tokens(module, table, ctx.splits.train.x, padding)
        first = torch.arange(min(vocabulary.first_rows, table.num_embeddings))
        keep = torch.unique(torch.cat([used, first]))
        tested = tp_.used_tokens(module, table, ctx.splits.test.x, padding)
        trimmed = tp_.trim_vocabulary(module, vocabulary.layer, keep, vocabulary.unknown_id)
        unknown_in_test = int((~torch.isin(tested, keep)).sum())
        return {
            "vocabulary_rows_before": table.num_embeddings,
            "vocabulary_rows_after": trimmed.num_embeddings,
            "vocabulary_train_tokens": len(used),
            # Distinct test-split tokens the trimmed table maps to the unknown token: what the
            # trimming costs on the text the model is judged on (it never trains on it).
            "vocabulary_test_tokens": len(tested),
            "vocabulary_test_tokens_dropped": unknown_in_test,
        }

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
