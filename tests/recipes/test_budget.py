"""The recipe's budget: seeds, training epochs, latency calls and batch size, each refused over
its default with one located line that names the figure, the limit and the fix; allowed by a
declared `budget:` up to the field's cap; and every bundled example within the defaults."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import compressgate.recipes.manifest as m
from compressgate.recipes.load import load_recipe, parse_recipe
from compressgate.registry.authoring import EXAMPLES as EXAMPLE_RECIPES
from tests.helpers.workspace import Invoke

EXAMPLES = Path(m.__file__).parent / "examples"

# Per seed: 10 + 20 + 2 x 3 + 4 = 40 epochs, 80 for the two seeds; latency: 2 x (10 + 100) calls.
BASE = """\
apiVersion: compressgate/v1
kind: Recipe
metadata: {name: budget, version: 1, owners: [ml-platform]}
environment: {lock: requirements.lock}
model:
  factory: compressgate.recipes.examples.digits:build_cnn
  train: {epochs: 10}
data:
  loader: compressgate.recipes.examples.digits:load
seeds: [0, 1]
stages:
  - name: distill
    kind: distill
    student: {factory: compressgate.recipes.examples.digits:build_student}
    epochs: 20
  - name: prune
    kind: prune
    method: structured
    sparsity: 0.5
    rounds: 2
    finetune_epochs: 3
  - name: qat
    kind: quantize
    method: qat
    qat_epochs: 4
evaluators:
  - kind: accuracy
  - kind: latency
    batch_sizes: [1, 32]
    warmup: 10
    repeats: 100
"""
BREAKDOWN = "stages[0].epochs 20 + stages[1] 2 rounds × 3 finetune_epochs + stages[2].qat_epochs 4"


def edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} must occur once"
    return text.replace(old, new)


def seeds(n: int) -> Callable[[str], str]:
    return lambda text: edit(text, "seeds: [0, 1]", f"seeds: [{', '.join(map(str, range(n)))}]")


def budget(**fields: int) -> str:
    return "budget: {" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}\n"


def line_of(text: str, fragment: str) -> int:
    """The 1-based line of the first line holding `fragment`."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


@dataclass(frozen=True)
class Validated:
    path: Path
    code: int
    lines: list[str]  # stderr's lines
    stdout: str


@pytest.fixture
def validate(tmp_path: Path, cli: Invoke) -> Callable[[str], Validated]:
    """Write a manifest beside the examples' lock and run `recipe validate --no-power` on it."""
    shutil.copyfile(EXAMPLES / "requirements.lock", tmp_path / "requirements.lock")

    def run(text: str) -> Validated:
        path = tmp_path / "recipe.yaml"
        path.write_text(text, encoding="utf-8")
        result = cli("recipe", "validate", "--no-power", path)
        assert "Traceback" not in result.stdout + result.stderr
        return Validated(path, result.exit_code, result.stderr.splitlines(), result.stdout)

    return run


def refused(done: Validated, line: int, field: str) -> str:
    """The one error line's message, after checking its exit code, file, line and field."""
    assert done.code == 2, done.lines
    assert len(done.lines) == 1, done.lines
    prefix = f"Error: {done.path}:{line} {field}: "
    assert done.lines[0].startswith(prefix), done.lines[0]
    assert done.stdout == ""
    return done.lines[0][len(prefix) :]


def accepted(done: Validated) -> None:
    assert done.code == 0, done.lines
    assert done.stdout.startswith(f"ok {done.path} (budget v1)")


def test_the_base_recipe_is_within_the_default_budget(
    validate: Callable[[str], Validated],
) -> None:
    accepted(validate(BASE))
    figures = m.budget_figures(parse_recipe(BASE.encode(), "<base>")[0])
    assert figures == {"seeds": 2, "epochs": 80, "latency_calls": 220, "batch_size": 64}


# --- seeds ---------------------------------------------------------------------------------------


def test_ten_seeds_are_the_default_budget(validate: Callable[[str], Validated]) -> None:
    accepted(validate(seeds(10)(BASE)))


def test_eleven_seeds_are_refused_at_the_seeds_line_with_the_fix(
    validate: Callable[[str], Validated],
) -> None:
    text = seeds(11)(BASE)
    said = refused(validate(text), line_of(text, "seeds:"), "seeds")
    assert said == (
        "11 seeds, over the default budget.seeds (10); each seed trains its own baseline and "
        "runs every stage: use fewer, or declare `budget.seeds: 11` to allow it"
    )


def test_a_declared_budget_allows_more_seeds(validate: Callable[[str], Validated]) -> None:
    accepted(validate(seeds(11)(BASE) + budget(seeds=11)))
    text = seeds(12)(BASE) + budget(seeds=11)
    said = refused(validate(text), line_of(text, "seeds:"), "seeds")
    assert said.startswith("12 seeds, over budget.seeds (11);")


def test_seeds_over_budget_give_one_line_not_an_epochs_one_too(
    validate: Callable[[str], Validated],
) -> None:
    """50 seeds x 40 epochs is over the epochs budget as well: the seeds are the one cause."""
    text = seeds(50)(BASE)
    said = refused(validate(text), line_of(text, "seeds:"), "seeds")
    assert said.startswith("50 seeds, over the default budget.seeds (10)")


def test_seeds_past_the_cap_are_refused_whatever_the_budget(
    validate: Callable[[str], Validated],
) -> None:
    text = BASE + budget(seeds=1001)
    said = refused(validate(text), line_of(text, "budget:"), "budget.seeds")
    assert said == "must be <= 1000, not 1001"
    text = seeds(1001)(BASE) + budget(seeds=1000)
    said = refused(validate(text), line_of(text, "seeds:"), "seeds")
    assert said == "must have at most 1000 items"
    accepted(validate(seeds(1000)(BASE) + budget(seeds=1000, epochs=40_000)))


# --- epochs --------------------------------------------------------------------------------------


def test_a_thousand_epochs_are_the_default_budget(validate: Callable[[str], Validated]) -> None:
    text = edit(BASE, "train: {epochs: 10}", "train: {epochs: 470}")  # 2 x (470 + 30) = 1,000
    accepted(validate(text))


def test_epochs_over_the_default_are_refused_at_the_largest_term(
    validate: Callable[[str], Validated],
) -> None:
    text = edit(BASE, "train: {epochs: 10}", "train: {epochs: 471}")
    said = refused(validate(text), line_of(text, "train:"), "model.train.epochs")
    assert said == (
        f"the run would train for 1,002 epochs (2 seeds × 501: model.train.epochs 471 + "
        f"{BREAKDOWN}), over the default budget.epochs (1,000): train for fewer, or declare "
        "`budget.epochs: 1002` to allow it"
    )


def test_a_declared_budget_allows_more_epochs(validate: Callable[[str], Validated]) -> None:
    text = edit(BASE, "train: {epochs: 10}", "train: {epochs: 471}")
    accepted(validate(text + budget(epochs=1002)))
    said = refused(
        validate(text + budget(epochs=1001)), line_of(text, "train:"), "model.train.epochs"
    )
    assert "over budget.epochs (1,001): train for fewer, or declare `budget.epochs: 1002`" in said


def test_prune_rounds_times_finetune_epochs_count_and_are_pointed_at(
    validate: Callable[[str], Validated],
) -> None:
    text = edit(BASE, "rounds: 2", "rounds: 100")  # 2 x (10 + 20 + 300 + 4) = 668
    accepted(validate(text))
    text = edit(text, "finetune_epochs: 3", "finetune_epochs: 5")  # 2 x (34 + 500) = 1,068
    said = refused(validate(text), line_of(text, "rounds: 100"), "stages[1].rounds")
    assert said.startswith("the run would train for 1,068 epochs (2 seeds × 534: ")
    assert "stages[1] 100 rounds × 5 finetune_epochs" in said
    text = edit(BASE, "finetune_epochs: 3", "finetune_epochs: 300")  # 2 x (34 + 600) = 1,268
    said = refused(validate(text), line_of(text, "finetune_epochs:"), "stages[1].finetune_epochs")
    assert said.startswith("the run would train for 1,268 epochs")


def test_distill_and_qat_epochs_count(validate: Callable[[str], Validated]) -> None:
    text = edit(BASE, "epochs: 20", "epochs: 600")
    said = refused(validate(text), line_of(text, "epochs: 600"), "stages[0].epochs")
    assert said.startswith("the run would train for 1,240 epochs")
    text = edit(BASE, "qat_epochs: 4", "qat_epochs: 900")
    said = refused(validate(text), line_of(text, "qat_epochs:"), "stages[2].qat_epochs")
    assert said.startswith("the run would train for 1,872 epochs")


def test_ten_thousand_epochs_of_one_seed_are_refused(validate: Callable[[str], Validated]) -> None:
    """The review's case: a baseline trained for 10,000 epochs validated before the budget."""
    text = seeds(1)(edit(BASE, "train: {epochs: 10}", "train: {epochs: 10000}"))
    said = refused(validate(text), line_of(text, "train:"), "model.train.epochs")
    assert said.startswith("the run would train for 10,030 epochs (1 seed × 10,030: ")
    assert said.endswith("declare `budget.epochs: 10030` to allow it")


def test_epochs_past_the_cap_cannot_be_allowed(validate: Callable[[str], Validated]) -> None:
    text = edit(BASE, "rounds: 2", "rounds: 100")
    text = edit(text, "finetune_epochs: 3", "finetune_epochs: 1000")  # 2 x 100,034
    said = refused(
        validate(text + budget(epochs=100_000)),
        line_of(text, "finetune_epochs:"),
        "stages[1].finetune_epochs",
    )
    assert said.endswith(
        "over budget.epochs (100,000): train for fewer: no budget may allow more than 100,000"
    )
    text = BASE + budget(epochs=100_001)
    said = refused(validate(text), line_of(text, "budget:"), "budget.epochs")
    assert said == "must be <= 100000, not 100001"


# --- latency calls -------------------------------------------------------------------------------


def latency(repeats: str) -> str:
    return edit(BASE, "    repeats: 100\n", repeats)


def test_ten_thousand_latency_calls_are_the_default_budget(
    validate: Callable[[str], Validated],
) -> None:
    accepted(validate(latency("    repeats: 4990\n")))  # 2 x (10 + 4,990)


def test_latency_calls_over_the_default_are_refused_at_repeats(
    validate: Callable[[str], Validated],
) -> None:
    text = latency("    repeats: 4991\n")
    said = refused(validate(text), line_of(text, "repeats:"), "evaluators[1].repeats")
    assert said == (
        "latency would call each model 10,002 times per measurement (batch 1: 10 warm-up + "
        "4,991; batch 32: 10 warm-up + 4,991), after every stage of every seed; over the default "
        "budget.latency_calls (10,000): lower its repeats, or declare "
        "`budget.latency_calls: 10002` to allow it"
    )
    accepted(validate(text + budget(latency_calls=10_002)))


def test_batch_repeats_count_and_are_pointed_at(validate: Callable[[str], Validated]) -> None:
    text = latency("    repeats: 100\n    batch_repeats: {32: 20000}\n")
    said = refused(validate(text), line_of(text, "batch_repeats:"), "evaluators[1].batch_repeats")
    assert said.startswith(
        "latency would call each model 20,120 times per measurement (batch 1: 10 warm-up + 100; "
        "batch 32: 10 warm-up + 20,000)"
    )


def test_a_million_latency_repeats_cannot_be_allowed(validate: Callable[[str], Validated]) -> None:
    """The review's case: 10^6 repeats at each of two batch sizes."""
    text = latency("    repeats: 1000000\n") + budget(latency_calls=1_000_000)
    said = refused(validate(text), line_of(text, "repeats:"), "evaluators[1].repeats")
    assert "2,000,020 times per measurement" in said
    assert said.endswith(
        "over budget.latency_calls (1,000,000): lower its repeats: no budget may allow more than "
        "1,000,000"
    )
    text = BASE + budget(latency_calls=1_000_001)
    said = refused(validate(text), line_of(text, "budget:"), "budget.latency_calls")
    assert said == "must be <= 1000000, not 1000001"


# --- batch size ----------------------------------------------------------------------------------


def test_batch_1024_is_the_default_budget(validate: Callable[[str], Validated]) -> None:
    accepted(validate(edit(BASE, "batch_sizes: [1, 32]", "batch_sizes: [1, 1024]")))


def test_a_latency_batch_over_the_default_is_refused_at_its_item(
    validate: Callable[[str], Validated],
) -> None:
    text = edit(BASE, "batch_sizes: [1, 32]", "batch_sizes: [1, 65536]")
    said = refused(validate(text), line_of(text, "batch_sizes:"), "evaluators[1].batch_sizes[1]")
    assert said == (
        "batch size 65,536, over the default budget.batch_size (1,024): use a smaller one, or "
        "declare `budget.batch_size: 65536` to allow it"
    )
    accepted(validate(text + budget(batch_size=65_536)))


def test_a_training_batch_over_the_default_is_refused(
    validate: Callable[[str], Validated],
) -> None:
    text = edit(BASE, "train: {epochs: 10}", "train: {epochs: 10, batch_size: 2048}")
    said = refused(validate(text), line_of(text, "train:"), "model.train.batch_size")
    assert said.startswith("batch size 2,048, over the default budget.batch_size (1,024)")
    text = edit(BASE, "qat_epochs: 4", "qat_epochs: 4\n    batch_size: 1025")
    said = refused(validate(text), line_of(text, "batch_size:"), "stages[2].batch_size")
    assert said.startswith("batch size 1,025, over")
    accepted(validate(text + budget(batch_size=1025)))


def test_batches_past_the_cap_are_refused_whatever_the_budget(
    validate: Callable[[str], Validated],
) -> None:
    text = edit(BASE, "epochs: 20", "epochs: 20\n    batch_size: 65537") + budget(batch_size=65_536)
    said = refused(validate(text), line_of(text, "batch_size:"), "stages[0].batch_size")
    assert said == "must be <= 65536, not 65537"
    text = BASE + budget(batch_size=65_537)
    said = refused(validate(text), line_of(text, "budget:"), "budget.batch_size")
    assert said == "must be <= 65536, not 65537"


# --- the budget section itself, and the examples --------------------------------------------------


def test_the_budget_takes_no_unknown_key(validate: Callable[[str], Validated]) -> None:
    text = BASE + budget(epoch=5)
    said = refused(validate(text), line_of(text, "budget:"), "budget.epoch")
    assert said.startswith("unknown key 'epoch' (did you mean 'epochs'?)")


def test_each_figure_over_budget_is_its_own_line(validate: Callable[[str], Validated]) -> None:
    text = edit(BASE, "train: {epochs: 10}", "train: {epochs: 600}")
    text = edit(text, "batch_sizes: [1, 32]", "batch_sizes: [1, 2048]")
    done = validate(text)
    assert done.code == 2
    assert [line.split(" ")[2] for line in done.lines] == [
        "model.train.epochs:",
        "evaluators[1].batch_sizes[1]:",
    ]


@pytest.mark.parametrize("name", sorted(f"{name}.yaml" for name in EXAMPLE_RECIPES))
def test_every_bundled_example_is_within_the_default_budget(name: str) -> None:
    recipe = load_recipe(EXAMPLES / name).recipe
    assert "budget" not in recipe.model_fields_set
    assert list(m.budget_issues(recipe)) == []
    figures = m.budget_figures(recipe)
    defaults = m.Budget().model_dump()
    assert all(figures[field] <= defaults[field] / 2 for field in figures), figures


def test_the_caps_are_the_fields_bounds_in_the_published_schema() -> None:
    from compressgate.registry.authoring import recipe_schema

    fields = recipe_schema()["definitions"]["Budget"]["properties"]
    assert {name: spec["maximum"] for name, spec in fields.items()} == m.BUDGET_CAPS
    assert {name: spec["default"] for name, spec in fields.items()} == m.Budget().model_dump()
