"""A toy compressgate plug-in: `toy-round` rounds a torch model's weights to a number of
decimals (a real, cheap change to the artifact), `toy-weights` measures the weights it leaves
(their L2 norm and how many distinct values they take)."""

from __future__ import annotations

import copy

import torch
from pydantic import BaseModel, ConfigDict, Field

from compressgate.evaluators.base import EvalContext, Evaluator, Subject
from compressgate.evaluators.results import Estimate, PluginResult
from compressgate.recipes.data import Splits
from compressgate.recipes.models import TorchModel, Variant
from compressgate.recipes.stages.base import Stage, StageContext


class RoundParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    decimals: int = Field(default=2, ge=0, le=8, description="decimals kept in every weight")


class RoundWeights(Stage[RoundParams]):
    """Round every floating-point parameter of a torch model to `decimals` decimals."""

    kind = "toy-round"
    accepts = ("torch",)
    Params = RoundParams

    def apply(self, model: Variant, spec: RoundParams, ctx: StageContext) -> Variant:
        incoming = self.torch_input(model, ctx)
        module = copy.deepcopy(incoming.module)
        changed = 0
        with torch.no_grad():
            for parameter in module.parameters():
                if parameter.is_floating_point():
                    rounded = torch.round(parameter, decimals=spec.decimals)
                    changed += int((rounded != parameter).sum())
                    parameter.copy_(rounded)
        ctx.record(decimals=spec.decimals, weights_changed=changed)
        return TorchModel(module=module, factory=incoming.factory, args=dict(incoming.args))


class WeightStats(Evaluator[BaseModel]):
    """The L2 norm of a model's weights and the number of distinct values they take (counted
    on its torch form: an ONNX variant's float torch ancestor)."""

    kind = "toy-weights"

    def evaluate(
        self,
        candidate: Subject,
        baseline: Subject | None,
        splits: Splits,
        spec: BaseModel,
        ctx: EvalContext,
    ) -> PluginResult | None:
        counted = candidate.counts_from
        if counted is None:
            return None
        weights = torch.cat([p.detach().flatten().double() for p in counted.module.parameters()])
        return PluginResult(
            kind=self.kind,
            estimates={
                "toy_weights.l2_norm": Estimate.exact(float(weights.norm())),
                "toy_weights.distinct": Estimate.exact(
                    float(torch.unique(weights).numel()), higher_is_better=False
                ),
            },
            details={"parameters": int(weights.numel())},
        )
