"""Stand-ins for the published checkpoints: the real architectures with random weights.

Tests of the real path cannot download ``facebook/bart-base``, ``t5-base``,
``openai/clip-vit-base-patch32`` or CLIP RN101. This module writes checkpoints with the
published configurations (so shapes, parameter counts, tokenizer formats and the loading
code are the real ones) and random weights, in Hugging Face's cache layout under a given
``HF_HOME``::

    <hf_home>/hub/models--<org>--<name>/refs/main              the snapshot's revision
    <hf_home>/hub/models--<org>--<name>/snapshots/<rev>/...    config.json, weights, tokenizer

so ``from_pretrained("facebook/bart-base")`` finds them with ``HF_HUB_OFFLINE=1``.
Tokenizers are built here, with no data: a byte-level BPE in BART's format (``vocab.json``
+ ``merges.txt``, ids ``<s>=0 <pad>=1 </s>=2 <unk>=3 ... <mask>=50264``) at BART's size,
and a Unigram tokenizer in T5's (``<pad>=0 </s>=1 <unk>=2``, sentinels ``<extra_id_0>=32099``
down to ``<extra_id_99>=32000``). CLIP RN101 (not a transformers model) is written from
its published state-dict keys and shapes (``tests/fixtures/published/clip_rn101_visual.json``)
as a plain safetensors file and as the open_clip hub repository ``timm/resnet101_clip.openai``.

Weights are float32, like the published files, because transformers' ``dtype="auto"``
would otherwise load half-precision models. Building everything takes about a minute
and ~2.3 GB; :func:`cached_hf_home` builds once per content key and reuses it.

Public API (kept stable; add, do not rename): the repo-id constants, :data:`ALL_REPOS`,
:func:`build`, :func:`cached_hf_home`, :func:`snapshot`, :func:`offline_env`, :func:`offline_hub`,
:func:`save_in_cache`, :func:`bart_tokenizer`, :func:`t5_tokenizer`, :func:`rn101_state_dict`,
:func:`save_rn101`, :data:`RN101_SHAPES`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import shutil
import string
from pathlib import Path
from typing import Iterable, Iterator

HERE = Path(__file__).resolve().parent
RN101_SHAPES = HERE / "fixtures" / "published" / "clip_rn101_visual.json"

BART = "facebook/bart-base"
T5 = "google-t5/t5-base"  # the hub's current id; "t5-base" is its legacy alias
T5_LEGACY = "t5-base"
CLIP_VIT_B32 = "openai/clip-vit-base-patch32"
CLIP_RN101 = "timm/resnet101_clip.openai"  # open_clip's hub repo of OpenAI's RN101
ALL_REPOS = (BART, T5, CLIP_VIT_B32, CLIP_RN101)
RN101_FILE = "RN101.safetensors"  # the plain-file copy at <hf_home>/RN101.safetensors

BART_VOCAB_SIZE = 50265
T5_PIECES = 32000  # sentencepiece pieces; + 100 sentinels = 32100 tokens, the model has 32128 rows

# The published config.json values that define each architecture (the rest are defaults).
BART_CONFIG = dict(
    activation_dropout=0.1, activation_function="gelu", attention_dropout=0.1, bos_token_id=0,
    d_model=768, decoder_attention_heads=12, decoder_ffn_dim=3072, decoder_layers=6,
    decoder_start_token_id=2, dropout=0.1, encoder_attention_heads=12, encoder_ffn_dim=3072,
    encoder_layers=6, eos_token_id=2, forced_bos_token_id=0, forced_eos_token_id=2, init_std=0.02,
    max_position_embeddings=1024, pad_token_id=1, scale_embedding=False, vocab_size=BART_VOCAB_SIZE,
)
T5_CONFIG = dict(
    d_ff=3072, d_kv=64, d_model=768, decoder_start_token_id=0, dropout_rate=0.1, eos_token_id=1,
    feed_forward_proj="relu", initializer_factor=1.0, layer_norm_epsilon=1e-6, n_positions=512,
    num_heads=12, num_layers=12, pad_token_id=0, relative_attention_num_buckets=32, vocab_size=32128,
)
# transformers' CLIPConfig defaults are ViT-B/32's (text 512x12, vision 768x12, patch 32, 224 px)
CLIP_CONFIG = dict(projection_dim=512)
# open_clip's model config of RN101 (open_clip_config.json in its hub repo)
RN101_OPEN_CLIP_CONFIG = {
    "model_cfg": {
        "embed_dim": 512, "quick_gelu": True,
        "vision_cfg": {"image_size": 224, "layers": [3, 4, 23, 3], "width": 64, "patch_size": None},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12},
    },
    "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]},
}


# --- cache layout ----------------------------------------------------------------------------
def repo_folder(hf_home: str | Path, repo_id: str) -> Path:
    """``<hf_home>/hub/models--<org>--<name>`` (huggingface_hub's naming)."""
    return Path(hf_home) / "hub" / ("models--" + repo_id.replace("/", "--"))


def snapshot(hf_home: str | Path, repo_id: str) -> Path:
    """The snapshot folder ``refs/main`` points at (where the checkpoint's files are)."""
    folder = repo_folder(hf_home, repo_id)
    return folder / "snapshots" / (folder / "refs" / "main").read_text().strip()


def save_in_cache(hf_home: str | Path, repo_id: str, files_from: str | Path, move: bool = False) -> Path:
    """Put every file of the folder ``files_from`` into the cache as ``repo_id``'s snapshot
    (moved when ``move``, else hard-linked where possible, else copied); returns the snapshot
    folder. The revision is a hash of the files' names and sizes."""
    files_from = Path(files_from)
    files = sorted(p for p in files_from.rglob("*") if p.is_file())
    rev = hashlib.sha1(json.dumps([[str(p.relative_to(files_from)), p.stat().st_size] for p in files]).encode()).hexdigest()
    folder = repo_folder(hf_home, repo_id)
    snap = folder / "snapshots" / rev
    for path in files:
        target = snap / path.relative_to(files_from)
        target.parent.mkdir(parents=True, exist_ok=True)
        if move:
            shutil.move(path, target)
            continue
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(rev)
    return snap


def offline_env(hf_home: str | Path) -> dict[str, str]:
    """Environment variables that make transformers/huggingface_hub read only this cache."""
    return {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1"}


@contextlib.contextmanager
def offline_hub(hf_home: str | Path) -> Iterator[Path]:
    """In this process, make huggingface_hub (and so transformers) read only this cache,
    offline, until the block ends. Needed where the hub was imported before ``HF_HOME`` was
    set: it reads the environment once, at import. Subprocesses get :func:`offline_env`."""
    from huggingface_hub import constants

    saved = {k: getattr(constants, k) for k in ("HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE")}
    constants.HF_HOME, constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = (
        str(hf_home), str(Path(hf_home) / "hub"), True)
    try:
        yield Path(hf_home)
    finally:
        for k, v in saved.items():
            setattr(constants, k, v)


# --- tokenizers ------------------------------------------------------------------------------
def _bart_merges(n: int) -> list[tuple[str, str]]:
    """``n`` byte-level BPE merges over letters, each of tokens made by earlier merges:
    ``Ġ``+letter, letter pairs, ``Ġ``+pair, triples, ``Ġ``+triple, first lower- then upper-case."""
    lower, upper = string.ascii_lowercase, string.ascii_uppercase
    merges: list[tuple[str, str]] = []
    for first in (lower, upper):
        merges += [("Ġ", a) for a in first]
        merges += [(a, b) for a in first for b in lower]
        merges += [("Ġ" + a, b) for a in first for b in lower]
    for first in (lower, upper):
        merges += [(a + b, c) for a in first for b in lower for c in lower]
        merges += [("Ġ" + a + b, c) for a in first for b in lower for c in lower]
    if len(merges) < n:
        raise ValueError(f"only {len(merges)} synthetic merges, {n} asked")
    return merges[:n]


def bart_tokenizer(out: str | Path, vocab_size: int = BART_VOCAB_SIZE) -> Path:
    """Write a byte-level BPE tokenizer in BART's format to ``out`` (``vocab.json``,
    ``merges.txt``, ``tokenizer.json``, ``tokenizer_config.json``) with ``vocab_size`` tokens."""
    from tokenizers import pre_tokenizers
    from transformers import BartTokenizer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    merges = _bart_merges(vocab_size - len(specials) - len(alphabet) - 1)
    vocab: dict[str, int] = {}
    for token in [*specials, *alphabet, *("".join(m) for m in merges), "<mask>"]:
        vocab.setdefault(token, len(vocab))
    assert len(vocab) == vocab_size, len(vocab)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tok = BartTokenizer(vocab=str(out / "vocab.json"), merges=str(out / "merges.txt"))
    tok.save_pretrained(str(out))
    return out


def _t5_pieces(n: int) -> list[str]:
    """``n`` sentencepiece-style pieces: ``▁``, printable characters, ``▁``+character,
    lower-case pairs, ``▁``+pair, triples, ``▁``+triple."""
    lower = string.ascii_lowercase
    chars = [c for c in string.printable if not c.isspace()]
    pieces = ["▁", *chars, *("▁" + c for c in chars)]
    pieces += [a + b for a in lower for b in lower] + ["▁" + a + b for a in lower for b in lower]
    pieces += [a + b + c for a in lower for b in lower for c in lower]
    pieces += ["▁" + a + b + c for a in lower for b in lower for c in lower]
    if len(pieces) < n:
        raise ValueError(f"only {len(pieces)} synthetic pieces, {n} asked")
    return pieces[:n]


def t5_tokenizer(out: str | Path, n_pieces: int = T5_PIECES) -> Path:
    """Write a Unigram tokenizer laid out like t5-base's to ``out`` (``tokenizer.json`` +
    ``tokenizer_config.json``): ``<pad> </s> <unk>``, ``n_pieces - 3`` pieces, 100 sentinels."""
    from transformers import T5Tokenizer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # one score for every piece: the segmentation with the fewest pieces wins
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(p, -5.0) for p in _t5_pieces(n_pieces - 3)]
    vocab += [(f"<extra_id_{i}>", 0.0) for i in range(99, -1, -1)]
    tok = T5Tokenizer(vocab=vocab, extra_ids=100)
    tok.save_pretrained(str(out))
    return out


# --- models ----------------------------------------------------------------------------------
def _save_hf_model(model, out: Path, dtype) -> None:
    model.to(dtype).save_pretrained(str(out))


def bart_model(out: str | Path, dtype=None) -> Path:
    """``BartForConditionalGeneration`` at bart-base's config, random weights, + tokenizer."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(0)
    _save_hf_model(BartForConditionalGeneration(BartConfig(**BART_CONFIG)), Path(out), dtype or torch.float32)
    bart_tokenizer(out)
    return Path(out)


def t5_model(out: str | Path, dtype=None) -> Path:
    """``T5ForConditionalGeneration`` at t5-base's config, random weights, + tokenizer."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    _save_hf_model(T5ForConditionalGeneration(T5Config(**T5_CONFIG)), Path(out), dtype or torch.float32)
    t5_tokenizer(out)
    return Path(out)


def clip_vit_model(out: str | Path, dtype=None) -> Path:
    """``CLIPModel`` at ViT-B/32's config, random weights, + CLIP's image processor config."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    _save_hf_model(CLIPModel(CLIPConfig(**CLIP_CONFIG)), Path(out), dtype or torch.float32)
    CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(str(out))
    return Path(out)


def rn101_state_dict(dtype=None, seed: int = 0) -> dict:
    """Random weights under the published RN101 visual tower's keys and shapes (no prefix):
    convolutions/linears ~ N(0, 1/fan_in), BatchNorm as freshly built (weight 1, bias 0,
    running mean 0, running var 1), attention-pool position embedding ~ N(0, 1/width)."""
    import torch

    dtype = dtype or torch.float32
    shapes = json.loads(RN101_SHAPES.read_text())["shapes"]
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            state[key] = torch.zeros((), dtype=torch.long)
            continue
        if leaf in ("running_var",) or (leaf == "weight" and len(shape) == 1):
            value = torch.ones(shape)
        elif leaf in ("running_mean", "bias"):
            value = torch.zeros(shape)
        else:
            fan_in = shape[-1] if len(shape) == 2 else math.prod(shape[1:])
            value = torch.randn(shape, generator=gen) / fan_in ** 0.5
        state[key] = value.to(dtype)
    return state


def save_rn101(path: str | Path, prefix: str = "", extra: dict | None = None, dtype=None) -> Path:
    """Write :func:`rn101_state_dict` to a safetensors file, keys prefixed with ``prefix``
    (``"visual."`` as in a whole CLIP state dict), plus ``extra`` tensors."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {prefix + k: v.contiguous() for k, v in rn101_state_dict(dtype).items()}
    save_file({**state, **(extra or {})}, str(path), metadata={"format": "pt"})
    return path


def rn101_open_clip_repo(out: str | Path) -> Path:
    """The files of open_clip's hub repo of RN101: ``open_clip_model.safetensors`` (a whole
    CLIP state dict: ``visual.*`` plus two of the text tower's keys) and ``open_clip_config.json``."""
    import torch

    out = Path(out)
    extra = {"logit_scale": torch.tensor(4.6052), "text_projection": torch.zeros(512, 512)}
    save_rn101(out / "open_clip_model.safetensors", prefix="visual.", extra=extra)
    (out / "open_clip_config.json").write_text(json.dumps(RN101_OPEN_CLIP_CONFIG, indent=2))
    return out


BUILDERS = {BART: bart_model, T5: t5_model, CLIP_VIT_B32: clip_vit_model, CLIP_RN101: rn101_open_clip_repo}


def build(hf_home: str | Path, repos: Iterable[str] = ALL_REPOS, aliases: Iterable[str] = ()) -> Path:
    """Write the stand-ins of ``repos`` (ids of :data:`ALL_REPOS`) into ``<hf_home>/hub``, and
    ``<hf_home>/RN101.safetensors`` (the bare visual state dict) when RN101 is among them.
    ``aliases`` (e.g. ``["t5-base"]``) are stored a second time under that id too.
    Returns ``hf_home``."""
    import tempfile

    hf_home = Path(hf_home)
    hf_home.mkdir(parents=True, exist_ok=True)
    for repo in repos:
        if repo not in BUILDERS:
            raise ValueError(f"no stand-in for {repo!r}; known: {', '.join(BUILDERS)}")
        with tempfile.TemporaryDirectory(dir=hf_home, prefix=".build-") as tmp:  # same disk: moves are renames
            BUILDERS[repo](Path(tmp))
            for alias in aliases:
                if alias == T5_LEGACY and repo == T5:
                    save_in_cache(hf_home, alias, tmp)
            save_in_cache(hf_home, repo, tmp, move=True)
    if CLIP_RN101 in repos:
        save_rn101(hf_home / RN101_FILE)
    return hf_home


def content_key(repos: Iterable[str] = ALL_REPOS, aliases: Iterable[str] = ()) -> str:
    """What a built cache depends on: this file, the RN101 shapes, the library versions."""
    import tokenizers
    import torch
    import transformers

    h = hashlib.sha256()
    for path in (Path(__file__), RN101_SHAPES):
        h.update(path.read_bytes())
    h.update(json.dumps([sorted(repos), sorted(aliases), transformers.__version__, tokenizers.__version__,
                         torch.__version__]).encode())
    return h.hexdigest()[:16]


def cached_hf_home(root: str | Path, repos: Iterable[str] = ALL_REPOS, aliases: Iterable[str] = ()) -> Path:
    """``<root>/<content key>``, built by :func:`build` the first time and reused after
    (built in a temporary folder and renamed, so a killed build is never reused). Building
    a new key removes the other keys' folders under ``root`` (they are ~2 GB each)."""
    repos, aliases = tuple(repos), tuple(aliases)
    root = Path(root)
    key = content_key(repos, aliases)
    final = root / key
    if (final / "COMPLETE").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:  # parallel test workers: one builds, the others wait
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "COMPLETE").is_file():
            return final
        return _build_into(root, key, final, repos, aliases)


def _build_into(root: Path, key: str, final: Path, repos: tuple, aliases: tuple) -> Path:
    for stale in root.iterdir():
        if stale.name != key and len(stale.name) == len(key) and all(c in string.hexdigits for c in stale.name):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    build(tmp, repos, aliases)
    (tmp / "COMPLETE").write_text("\n".join(repos) + "\n")
    try:
        tmp.rename(final)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return final
