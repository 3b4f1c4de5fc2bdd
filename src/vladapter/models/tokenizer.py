"""Build the word-level tokenizer of the toy models from the prepared records.

Every word of the prepared JSON-lines records (question/statement text, context such as
subtitles, reference captions and answers, multiple-choice answers, target keys), plus
the task prefixes and the fixed words of the task text formats, lowercased with
punctuation split off. Special tokens come first, with the ids the tiny model configs
(``resources/models/tiny-*.json``) expect; every encoded text ends with ``</s>``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterable, Iterator

from vladapter.errors import ConfigError, DataError

# ids 0..4, fixed: the tiny configs' pad/eos/bos/decoder-start ids refer to them
SPECIAL_TOKENS = ["<pad>", "</s>", "<unk>", "<s>", "<mask>"]
# T5-style span-corruption sentinels for VL pre-training
N_SENTINELS = 100
# words the task text formats use even if no record contains them. Never edit: ids follow
# positions, so any change reorders the toy vocabulary; a new task's key (its text prefix)
# comes from the dataset registry (task_words) and is appended after the corpus words
FIXED_WORDS = [
    "vqa", "gqa", "nlvr", "caption", "tvqa", "how2qa", "tvc", "yc2c", "pretrain",
    "subs", "q", "ts", "choices", "a0", "a1", "a2", "a3", "a4", "true", "false", "yes", "no",
    *"0123456789", *":.,?!-[]()'\"",
]
RECORD_TEXT_FIELDS = ("text", "context")
RECORD_LIST_FIELDS = ("references", "choices")


def _pipeline():
    """The normaliser + pre-tokeniser shared by training the vocab and encoding."""
    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    pre = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                   pre_tokenizers.Punctuation(behavior="isolated")])
    return normalizer, pre


def record_texts(record: dict) -> Iterator[str]:
    """The strings of one prepared record (a ``Record.to_dict()``) that the model reads or writes."""
    for key in RECORD_TEXT_FIELDS:
        if record.get(key):
            yield record[key]
    for key in RECORD_LIST_FIELDS:
        yield from (s for s in record.get(key) or [] if s)
    yield from (record.get("targets") or {}).keys()


def prepared_files(prepared: Path) -> list[Path]:
    """``<prepared>/<dataset>/<split>.jsonl`` files, sorted; DataError when there are none."""
    files = sorted(prepared.glob("*/*.jsonl"))
    if not files:
        raise DataError("no prepared records found", path=prepared,
                        fix="run `vladapter prepare` first (it writes <dataset>/<split>.jsonl)")
    return files


def task_words() -> list[str]:
    """Every registered dataset's task key (the word of its text prefix, "vqa:"): in the
    vocabulary whether or not a record contains it."""
    from vladapter.data.datasets import DATASETS

    return list(dict.fromkeys(d.task for d in DATASETS.values()))


def build_tokenizer(texts: Iterable[str], min_frequency: int = 1):
    """A word-level ``PreTrainedTokenizerFast`` over ``texts`` (+ fixed words and specials)."""
    from collections import Counter

    from tokenizers import Tokenizer, models, processors
    from transformers import PreTrainedTokenizerFast

    normalizer, pre = _pipeline()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(word for word, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
    sentinels = [f"<extra_id_{i}>" for i in range(N_SENTINELS)]
    words = sorted(w for w, c in counts.items() if c >= min_frequency)
    vocab: dict[str, int] = {}
    for token in [*SPECIAL_TOKENS, *sentinels, *FIXED_WORDS, *words, *task_words()]:
        vocab.setdefault(token, len(vocab))

    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre
    eos = vocab["</s>"]
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos)])
    tok.add_special_tokens([*SPECIAL_TOKENS, *sentinels])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
        bos_token="<s>", mask_token="<mask>", additional_special_tokens=sentinels,
        model_max_length=1024, padding_side="right",
    )


def build_from_prepared(prepared: str | Path, out: str | Path, min_frequency: int = 1):
    """Build from every ``<prepared>/*/*.jsonl`` record and save to ``out`` (atomically)."""
    from tqdm import tqdm

    from vladapter.utils.io import atomic_dir, read_jsonl

    files = prepared_files(Path(prepared))

    def texts() -> Iterator[str]:
        for path in tqdm(files, desc="tokenizer vocab", unit="file"):
            for lineno, record in enumerate(read_jsonl(path), 1):
                if not isinstance(record, dict):
                    raise DataError("record is not a JSON object", path=path, record=f"line {lineno}",
                                    fix="re-run `vladapter prepare` for this dataset")
                yield from record_texts(record)

    tok = build_tokenizer(texts(), min_frequency=min_frequency)
    with atomic_dir(out) as tmp:
        tok.save_pretrained(str(tmp))
    return tok


def load_tokenizer(path_or_name: str | Path):
    """A tokenizer folder (``build-tokenizer`` output or any HF tokenizer folder), or a
    HF model name (``t5-base``, ``facebook/bart-base``) found in the local HF cache."""
    from transformers import AutoTokenizer

    path = Path(path_or_name)
    if path.is_dir():
        return AutoTokenizer.from_pretrained(str(path))
    try:
        return AutoTokenizer.from_pretrained(str(path_or_name))
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"cannot load tokenizer {str(path_or_name)!r}: no such folder, and no HF tokenizer of that name in "
            f"the local cache ({type(e).__name__}). Toy runs: `vladapter build-tokenizer --prepared "
            f"data/prepared --out {path_or_name}`; real runs need the HF cache (no downloads here)") from None


# --- CLI ------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prepared", default="data/prepared",
                        help="folder of prepared records <dataset>/<split>.jsonl (default: %(default)s)")
    parser.add_argument("--out", default="models/tokenizer", help="output folder (default: %(default)s)")
    parser.add_argument("--min-frequency", type=int, default=1,
                        help="keep words seen at least this often (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    if args.min_frequency < 1:
        raise ConfigError("--min-frequency must be >= 1")
    tok = build_from_prepared(args.prepared, args.out, args.min_frequency)
    print(f"wrote {args.out}: {len(tok)} tokens")
    return 0
