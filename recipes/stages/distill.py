"""Knowledge distillation into a smaller student (Hinton et al. 2015).

loss = (1 - alpha) · CE(student, labels) + alpha · T² · KL(teacher_T ‖ student_T)
       + Σ hint weight · MSE(adapter(student feature), teacher feature)

An embedding model (`objective: embedding`) has no labels and no logits: the student learns the
teachers' vectors on the unlabelled training text,

loss = cosine · (1 − cos(student, target)) + mse · MSE(student, target) + the hints' terms,

the target being the teachers' mean vector, computed once before training (the teachers are
frozen and deterministic). A student built by keeping some of the teacher's layers (the
layer-dropping initialisation of DistilBERT and the sentence-transformers L3 models) comes from
the student factory, e.g. `build_minilm(layers=[0, 2, 5])`.

The teachers are frozen (eval mode, no gradients). Several teachers are an ensemble: their
softened distributions are averaged. With `temperature_final` the temperature moves linearly
from `temperature` to it over the epochs. A hint pairs a student layer with a teacher layer
(FitNets); a 1x1 adapter, trained with the student and then discarded, maps the student's
channels onto the teacher's.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from compressgate.recipes import models, training
from compressgate.recipes.data import Split
from compressgate.recipes.manifest import DistillSpec
from compressgate.recipes.models import TorchModel, Variant
from compressgate.recipes.stages.base import STAGES, Stage, StageContext


@STAGES.register("distill")
class Distill(Stage[DistillSpec]):
    kind = "distill"

    def apply(self, model: Variant, spec: DistillSpec, ctx: StageContext) -> Variant:
        incoming = self.torch_input(model, ctx)
        teachers = (
            [incoming.module]
            if not spec.teachers
            else [self._teacher(i, ref, ctx) for i, ref in enumerate(spec.teachers)]
        )
        for teacher in teachers:
            teacher.eval()
            for p in teacher.parameters():
                p.requires_grad_(False)
        student_ref = spec.student
        torch.manual_seed(ctx.seed_for("student-init"))
        student = models.build(
            student_ref.factory,
            dict(student_ref.args),
            what=f"stage '{ctx.stage}' (seed {ctx.seed}) student",
            base=ctx.base,
            checkpoint=self._path(ctx, student_ref.checkpoint),
        )
        n_classes = self._check_fits(student.module, teachers, ctx)
        hooks = _Hints(spec, student.module, teachers[0], ctx)
        adapters = hooks.build_adapters(ctx.splits.train.x[:2])
        if spec.objective == "embedding":
            return self._embedding(student, teachers, hooks, adapters, spec, ctx)

        def temperature(epoch: int) -> float:
            if spec.temperature_final is None or spec.epochs == 1:
                return spec.temperature
            share = epoch / (spec.epochs - 1)
            return spec.temperature + share * (spec.temperature_final - spec.temperature)

        weight = training.class_weights(ctx.splits.train)

        def loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor, epoch: int) -> torch.Tensor:
            t = temperature(epoch)
            logits = net(x)
            with torch.no_grad():
                soft = torch.stack([F.softmax(teacher(x) / t, dim=1) for teacher in teachers])
                target = soft.mean(dim=0)
            kd = F.kl_div(F.log_softmax(logits / t, dim=1), target, reduction="batchmean")
            hard = F.cross_entropy(logits, y, weight=weight)
            value = (1 - spec.alpha) * hard + spec.alpha * t * t * kd
            return value + hooks.loss(adapters)

        params = tuple(p for adapter in adapters for p in adapter.parameters())
        with hooks:
            ctx.fit(
                student.module,
                description=f"distill ({len(teachers)} teacher(s))",
                purpose="batches",
                epochs=spec.epochs,
                lr=spec.lr,
                batch_size=spec.batch_size,
                loss=loss,
                extra_parameters=params,
            )
        ctx.record(
            teachers=len(teachers),
            classes=n_classes,
            temperature=spec.temperature,
            temperature_final=spec.temperature_final,
            hints=len(spec.hints),
        )
        return student

    def _embedding(
        self,
        student: TorchModel,
        teachers: list[nn.Module],
        hooks: _Hints,
        adapters: list[nn.Module],
        spec: DistillSpec,
        ctx: StageContext,
    ) -> Variant:
        """Learn the teachers' mean vector of every training sample."""
        train = ctx.splits.train
        targets = torch.stack(
            [training.predict(t, train.x, padding=ctx.splits.padding) for t in teachers]
        ).mean(dim=0)
        loss = training.embedding_loss(cosine=spec.cosine, mse=spec.mse)
        teacher = teachers[0]

        def with_hints(
            net: nn.Module, x: torch.Tensor, y: torch.Tensor, epoch: int
        ) -> torch.Tensor:
            value = loss(net, x, y, epoch)
            if not hooks.pairs:
                return value
            with torch.no_grad():
                teacher(x)  # the hint features of the teacher (the vectors are in y)
            return value + hooks.loss(adapters)

        params = tuple(p for adapter in adapters for p in adapter.parameters())
        with hooks:
            ctx.fit(
                student.module,
                description=f"distill embeddings ({len(teachers)} teacher(s))",
                purpose="batches",
                epochs=spec.epochs,
                lr=spec.lr,
                batch_size=spec.batch_size,
                loss=with_hints,
                extra_parameters=params,
                split=Split(train.x, targets, ids=train.ids),
            )
        distance = training.cosine_distance(student.module, train.x, targets, ctx.splits.padding)
        ctx.record(
            objective="embedding",
            teachers=len(teachers),
            dimension=int(targets.shape[-1]),
            train_samples=len(train),
            train_mean_cosine=round(1 - distance, 6),
            hints=len(spec.hints),
        )
        return student

    def _teacher(self, index: int, ref: Any, ctx: StageContext) -> nn.Module:
        if ref.checkpoint is None:
            raise ctx.error(
                f"teachers[{index}] ({ref.factory}) has no checkpoint; an untrained teacher "
                "teaches nothing",
                hint="give the teacher a checkpoint, or leave teachers empty to use the "
                "incoming model",
            )
        return models.build(
            ref.factory,
            dict(ref.args),
            what=f"stage '{ctx.stage}' teachers[{index}]",
            base=ctx.base,
            checkpoint=self._path(ctx, ref.checkpoint),
        ).module

    @staticmethod
    def _path(ctx: StageContext, ref: str | None) -> Any:
        if ref is None:
            return None
        return (ctx.base / ref) if ctx.base is not None else ref

    @staticmethod
    def _check_fits(student: nn.Module, teachers: list[nn.Module], ctx: StageContext) -> int:
        x = ctx.splits.train.x[:2]
        with torch.no_grad():
            expected = teachers[0](x).shape
            for i, teacher in enumerate(teachers[1:], start=1):
                if teacher(x).shape != expected:
                    raise ctx.error(
                        f"teachers[{i}] outputs {tuple(teacher(x).shape)}, "
                        f"teacher 0 outputs {tuple(expected)}"
                    )
            try:
                got = student(x).shape
            except Exception as exc:
                raise ctx.error(
                    f"the student does not fit the data: on inputs of shape {tuple(x.shape)} "
                    f"it raised {type(exc).__name__}: {exc}",
                    hint="check the student factory's input size and args",
                ) from exc
        if got != expected:
            raise ctx.error(
                f"the student does not fit the data: it outputs {tuple(got)} where the teacher "
                f"outputs {tuple(expected)}",
                hint="the student needs as many outputs as there are classes",
            )
        return int(expected[-1])


class _Hints:
    """Forward hooks that capture hint features from the student and the first teacher."""

    def __init__(
        self, spec: DistillSpec, student: nn.Module, teacher: nn.Module, ctx: StageContext
    ) -> None:
        self.spec = spec
        self.student_features: dict[str, torch.Tensor] = {}
        self.teacher_features: dict[str, torch.Tensor] = {}
        self.handles: list[Any] = []
        self.pairs: list[tuple[nn.Module, nn.Module, float, str, str]] = []
        self.student = student
        self.teacher = teacher
        for i, hint in enumerate(spec.hints):
            s_layer = _module(student, hint.student_layer, f"hints[{i}].student_layer", ctx)
            t_layer = _module(teacher, hint.teacher_layer, f"hints[{i}].teacher_layer", ctx)
            self.pairs.append((s_layer, t_layer, hint.weight, f"s{i}", f"t{i}"))
        self.ctx = ctx

    def __enter__(self) -> _Hints:
        for s_layer, t_layer, _, s_key, t_key in self.pairs:
            self.handles.append(
                s_layer.register_forward_hook(self._keep(self.student_features, s_key))
            )
            self.handles.append(
                t_layer.register_forward_hook(self._keep(self.teacher_features, t_key))
            )
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    @staticmethod
    def _keep(store: dict[str, torch.Tensor], key: str) -> Any:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            # A transformer layer returns a tuple whose first item is its hidden states.
            store[key] = output[0] if isinstance(output, tuple) else output

        return hook

    def build_adapters(self, x: torch.Tensor) -> list[nn.Module]:
        if not self.pairs:
            return []
        with self, torch.no_grad():
            self.student(x)
            self.teacher(x)
        adapters: list[nn.Module] = []
        torch.manual_seed(self.ctx.seed_for("hint-adapters"))
        for (_, _, _, s_key, t_key), hint in zip(self.pairs, self.spec.hints, strict=True):
            s, t = self.student_features[s_key], self.teacher_features[t_key]
            # (N, C) and (N, C, H, W) features map channels; (N, L, D) hidden states of a
            # transformer map their last axis, position by position.
            fits = s.shape[2:] == t.shape[2:] if s.dim() in (2, 4) else s.shape[:-1] == t.shape[:-1]
            if s.dim() != t.dim() or not fits or s.dim() not in (2, 3, 4):
                raise self.ctx.error(
                    f"hint {hint.student_layer} → {hint.teacher_layer}: feature shapes "
                    f"{tuple(s.shape)} and {tuple(t.shape)} cannot be matched",
                    hint="pair layers whose outputs have the same spatial size",
                )
            if s.dim() == 4:
                adapters.append(nn.Conv2d(s.shape[1], t.shape[1], 1))
            elif s.dim() == 3:
                adapters.append(nn.Linear(s.shape[-1], t.shape[-1]))
            else:
                adapters.append(nn.Linear(s.shape[1], t.shape[1]))
        return adapters

    def loss(self, adapters: list[nn.Module]) -> torch.Tensor:
        total = torch.zeros(())
        for adapter, (_, _, weight, s_key, t_key) in zip(adapters, self.pairs, strict=True):
            target = self.teacher_features[t_key].detach()
            total = total + weight * F.mse_loss(adapter(self.student_features[s_key]), target)
        return total


def _module(model: nn.Module, name: str, field: str, ctx: StageContext) -> nn.Module:
    known = [n for n, _ in model.named_modules() if n]
    if name not in known:
        raise ctx.error(
            f"{field}: unknown layer {name!r}; known: {', '.join(known)}",
            hint="layer names are the module paths of model.named_modules()",
        )
    return model.get_submodule(name)


__all__ = ["Distill", "TorchModel"]
