"""The evaluators of embedding models (`model.task: embedding`): `cosine` and `retrieval`.

Both compare the candidate's embeddings of the test samples with the baseline's, sample by
sample; the statistics and their intervals are `compressgate.evaluators.embedding`'s. Neither
applies to the
baseline itself (there is nothing to compare it with).
"""

from __future__ import annotations

import numpy as np

from compressgate.evaluators.base import EVALUATORS, EvalContext, Evaluator, Subject
from compressgate.evaluators.embedding import cosine_summary, cosines, topk_agreement
from compressgate.evaluators.results import CosineResult, RetrievalResult
from compressgate.recipes.data import Splits
from compressgate.recipes.evaluation import CosineSpec, RetrievalSpec

_WORST = 10  # least similar samples listed in the result


def _pair(
    candidate: Subject, baseline: Subject, splits: Splits, ctx: EvalContext, kind: str
) -> tuple[np.ndarray, np.ndarray]:
    ours = candidate.test_embeddings(splits.test, splits.padding)
    theirs = baseline.test_embeddings(splits.test, splits.padding)
    if ours.ndim != 2 or ours.shape != theirs.shape:
        raise ctx.error(
            kind,
            f"the model gives outputs of shape {ours.shape}, the baseline {theirs.shape}; an "
            "embedding model gives one vector per sample, of the baseline's width",
            hint="check the stage's output, or the recipe's 'model.task'",
        )
    return ours, theirs


@EVALUATORS.register("cosine")
class Cosine(Evaluator[CosineSpec]):
    kind = "cosine"

    def evaluate(
        self,
        candidate: Subject,
        baseline: Subject | None,
        splits: Splits,
        spec: CosineSpec,
        ctx: EvalContext,
    ) -> CosineResult | None:
        if baseline is None:
            return None
        ours, theirs = _pair(candidate, baseline, splits, ctx, self.kind)
        similarity = cosines(ours, theirs)
        summary = cosine_summary(similarity, spec.interval_level, ctx.bootstrap(spec.resamples))
        ids = splits.test.ids.numpy() if splits.test.ids is not None else np.arange(len(ours))
        worst = np.argsort(similarity, kind="stable")[:_WORST]
        return CosineResult(
            n=len(similarity),
            mean=summary.mean,
            p1=summary.p1,
            minimum=summary.minimum,
            worst=[int(ids[i]) for i in worst],
        )


@EVALUATORS.register("retrieval")
class Retrieval(Evaluator[RetrievalSpec]):
    kind = "retrieval"

    def evaluate(
        self,
        candidate: Subject,
        baseline: Subject | None,
        splits: Splits,
        spec: RetrievalSpec,
        ctx: EvalContext,
    ) -> RetrievalResult | None:
        if baseline is None:
            return None
        ours, theirs = _pair(candidate, baseline, splits, ctx, self.kind)
        if not spec.k < len(ours):
            raise ctx.error(
                self.kind,
                f"k = {spec.k} neighbours need more than {spec.k} test samples; the test split "
                f"has {len(ours)}",
                hint="lower 'k' or give the test split more samples",
            )
        agreement = topk_agreement(
            ours, theirs, spec.k, spec.interval_level, ctx.bootstrap(spec.resamples)
        )
        return RetrievalResult(
            n=len(ours),
            k=spec.k,
            top1_agreement=agreement.top1,
            overlap_at_k=agreement.overlap,
        )
