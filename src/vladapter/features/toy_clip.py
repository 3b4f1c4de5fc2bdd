"""Train the tiny CLIP of the toy world (models/toyclip) contrastively on image-caption pairs.

Two vision towers, trained with CLIP's symmetric contrastive loss on the pairs of a Karpathy-
format file (the toy pre-training split, data/raw/pretrain/dataset_pretrain.json), each with
a 2-layer HF CLIP text tower over a word vocabulary built from the captions:
- ``vit`` (default): Hugging Face's CLIPModel with a small config (64 px images, 8 px
  patches -> an 8x8 grid, 4 layers of width 128), saved with save_pretrained like any CLIP
  checkpoint. Its features carry colour but barely shape in its budget.
- ``resnet``: a tiny ResNet (features/toy_resnet.py), grid = its last 8x8 conv map, like
  the paper's CLIP RN101 grid features. It learns shape and count; the image tasks gain
  from it, the video tasks (per-frame vectors) lose (docs/features.md).
Both are saved as safetensors; `vladapter extract-features --backbone models/toyclip` loads
either. `vladapter probe` measures what their features carry.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from vladapter.errors import ConfigError, DataError, TrainingError
from vladapter.features.preprocess import ClipPreprocess
from vladapter.utils.io import write_json

if TYPE_CHECKING:
    import torch  # imported where used: `vladapter train-toy-clip --help` stays fast

SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")  # eos id 3: HF CLIP pools the text at the first eos
PAD, UNK, BOS, EOS = range(4)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


class WordVocab:
    """Lower-cased word vocabulary of the captions; encodes to ``<bos> words <eos> <pad>...``."""

    def __init__(self, tokens: list[str]):
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, texts: list[str]) -> "WordVocab":
        return cls(list(SPECIALS) + sorted({w for t in texts for w in words(t)}))

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, texts: list[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        ids = torch.full((len(texts), max_len), PAD, dtype=torch.long)
        for row, text in enumerate(texts):
            seq = [BOS] + [self.index.get(w, UNK) for w in words(text)][: max_len - 2] + [EOS]
            ids[row, : len(seq)] = torch.tensor(seq)
        return ids, ids != PAD


VISIONS = ("vit", "resnet")


def _text_config(vocab_size: int, text_width: int, text_layers: int, projection_dim: int, max_len: int) -> dict:
    return dict(vocab_size=vocab_size, hidden_size=text_width, intermediate_size=4 * text_width,
                num_hidden_layers=text_layers, num_attention_heads=max(1, text_width // 32),
                max_position_embeddings=max_len, projection_dim=projection_dim, pad_token_id=PAD, bos_token_id=BOS,
                eos_token_id=EOS)


def tiny_clip_config(vocab_size: int, image_size: int = 64, patch_size: int = 8, width: int = 128,
                     layers: int = 4, text_width: int = 128, text_layers: int = 2, projection_dim: int = 128,
                     max_len: int = 32):
    """The ViT toy CLIP's CLIPConfig (heads = width / 32)."""
    from transformers import CLIPConfig

    text = _text_config(vocab_size, text_width, text_layers, projection_dim, max_len)
    vision = dict(image_size=image_size, patch_size=patch_size, hidden_size=width, intermediate_size=4 * width,
                  num_hidden_layers=layers, num_attention_heads=max(1, width // 32), projection_dim=projection_dim)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)


def build_model(vision: str, vocab_size: int, image_size: int = 64, width: int = 128, text_width: int = 128,
                text_layers: int = 2, projection_dim: int = 128, max_len: int = 32, patch_size: int = 8,
                layers: int = 4, blocks: tuple[int, ...] = (0, 1, 1)):
    """A fresh toy CLIP: ``resnet`` (ToyResNetClip; ``blocks``) or ``vit`` (HF CLIPModel; ``patch_size``,
    ``layers``). Returns ``(model, max_len)``."""
    if vision == "resnet":
        from vladapter.features.toy_resnet import ToyResNetClip, ToyResNetConfig

        text = _text_config(vocab_size, text_width, text_layers, projection_dim, max_len)
        return ToyResNetClip(ToyResNetConfig(image_size, width, tuple(blocks), projection_dim, text)), max_len
    if vision == "vit":
        from transformers import CLIPModel

        config = tiny_clip_config(vocab_size, image_size, patch_size, width, layers, text_width, text_layers,
                                  projection_dim, max_len)
        return CLIPModel(config), max_len
    raise ConfigError(f"unknown toy CLIP vision tower {vision!r}; choose one of {', '.join(VISIONS)}")


def load_pairs(dataset_json: str | Path, images_dir: str | Path, size: int,
               splits: tuple[str, ...] = ("train", "restval")) -> tuple[np.ndarray, list[list[str]], list[str]]:
    """Images (uint8 (N, size, size, 3), CLIP-resized), their captions and ids from a Karpathy file."""
    from PIL import Image

    dataset_json, images_dir = Path(dataset_json), Path(images_dir)
    if not dataset_json.exists():
        raise DataError("caption file not found", path=dataset_json, fix="generate the toy world first (vladapter toyworld)")
    try:
        entries = json.loads(dataset_json.read_text())["images"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"not a Karpathy-format caption file ({e})", path=dataset_json,
                        fix='expected {"images": [{"filename", "split", "sentences": [{"raw"}]}]}') from None
    preprocess = ClipPreprocess(size)
    pixels, captions, ids = [], [], []
    for n, entry in enumerate(tqdm(entries, desc="load pairs", unit="image")):
        if entry.get("split", "train") not in splits:
            continue
        try:
            name, sentences = entry["filename"], [s["raw"] for s in entry["sentences"]]
        except (KeyError, TypeError):
            raise DataError("entry without filename/sentences", path=dataset_json, record=f"images[{n}]",
                            fix="repair the entry") from None
        candidates = [images_dir / entry.get("filepath", "") / name, images_dir / name]
        path = next((p for p in candidates if p.exists()), None)
        if path is None:
            raise DataError("image not found", path=candidates[-1], record=f"images[{n}]",
                            fix="regenerate the toy world / re-download the images")
        with Image.open(path) as image:
            pixels.append(preprocess.pixels(image))
        captions.append(sentences)
        ids.append(path.stem)
    if not pixels:
        raise DataError(f"no image-caption pairs in splits {splits}", path=dataset_json, fix="check the split names")
    return np.stack(pixels), captions, ids


def train_toy_clip(pixels: np.ndarray, captions: list[list[str]], output: str | Path, steps: int = 100,
                   batch_size: int = 128, lr: float = 1e-3, seed: int = 0, progress: bool = True,
                   vision: str = "vit", **config_overrides) -> dict:
    """Train a tiny CLIP (``vision`` tower: resnet | vit; ``config_overrides`` go to
    ``build_model``) on (image, random one of its captions) batches; save it to ``output``.

    Returns the training log (losses, in-batch retrieval accuracy, seconds), also written as
    ``train_log.json`` beside the weights (without the seconds: the same run, the same bytes). The folder is written under a temporary name and
    renamed, so ``output`` holds either the old or the complete new model.
    """
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    vocab = WordVocab.build([c for caps in captions for c in caps])
    model, max_len = build_model(vision, len(vocab), image_size=pixels.shape[1], **config_overrides)
    preprocess = ClipPreprocess(pixels.shape[1])
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optim = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                              lr=lr, betas=(0.9, 0.98), eps=1e-6)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    batch_size = min(batch_size, len(pixels))
    log = {"vision": vision, "steps": steps, "batch_size": batch_size, "lr": lr, "n_pairs": len(pixels), "loss": [], "acc": []}
    start = time.perf_counter()
    model.train()
    bar = tqdm(range(steps), desc="train toy CLIP", unit="step", disable=not progress)
    for step in bar:
        idx = rng.choice(len(pixels), batch_size, replace=False)
        texts = [captions[i][rng.integers(len(captions[i]))] for i in idx]
        input_ids, mask = vocab.encode(texts, max_len)
        out = model(input_ids=input_ids, attention_mask=mask, pixel_values=preprocess.normalise(pixels[idx]),
                    return_loss=True)
        if not torch.isfinite(out.loss):
            raise TrainingError(f"toy CLIP loss is {out.loss.item()} at step {step}; lower --lr (now {lr})")
        optim.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % 10 == 0 or step == steps - 1:
            acc = (out.logits_per_image.argmax(1) == torch.arange(batch_size)).float().mean().item()
            log["loss"].append([step, round(out.loss.item(), 4)])
            log["acc"].append([step, round(acc, 4)])
            bar.set_postfix(loss=f"{out.loss.item():.3f}", acc=f"{acc:.2f}")
    log["seconds"] = round(time.perf_counter() - start, 1)
    save_model(model, vocab, output, {k: v for k, v in log.items() if k != "seconds"})  # same bytes each time
    return log


def save_model(model, vocab: WordVocab, output: str | Path, log: dict) -> None:
    """save_pretrained (safetensors) + vocab.json + preprocessor config + train_log.json, atomically."""
    from transformers import CLIPImageProcessor

    output = Path(output)
    tmp = output.with_name(f".{output.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if hasattr(model, "save_pretrained"):  # the ViT: an HF CLIPModel
        model.save_pretrained(tmp, safe_serialization=True)
        size = model.config.vision_config.image_size
    else:
        model.save(tmp)
        size = model.config.image_size
    CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}).save_pretrained(tmp)
    write_json(tmp / "vocab.json", vocab.tokens)
    write_json(tmp / "train_log.json", log)
    old = output.with_name(f".{output.name}.old")
    if output.exists():
        shutil.rmtree(old, ignore_errors=True)
        output.rename(old)
    tmp.rename(output)
    shutil.rmtree(old, ignore_errors=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--captions", type=Path, default=Path("data/raw/pretrain/dataset_pretrain.json"),
                        help="Karpathy-format caption file (default: data/raw/pretrain/dataset_pretrain.json)")
    parser.add_argument("--images", type=Path, help="its images folder (default: images/ beside --captions)")
    parser.add_argument("--output", type=Path, default=Path("models/toyclip"), help="model folder (default: models/toyclip)")
    parser.add_argument("--image-size", type=int, default=64, help="input size = the toy images' size (default: 64)")
    parser.add_argument("--vision", choices=VISIONS, default="vit",
                        help="vision tower: vit (HF CLIP ViT, 8 px patches; barely learns shape) or resnet (a tiny "
                             "ResNet, grid = its last 8x8 conv map, like CLIP RN101; learns shape). Default: vit")
    parser.add_argument("--width", type=int, default=128,
                        help="grid dim: the ResNet's last-stage channels or the ViT's width (default: 128)")
    parser.add_argument("--blocks", default="0,1,1",
                        help="resnet: residual blocks per stride-2 stage, comma-separated (default: 0,1,1 -> "
                             "stages at 32, 16, 8 px)")
    parser.add_argument("--patch-size", type=int, default=8, help="vit: patch size in pixels (default: 8 -> 8x8 grid)")
    parser.add_argument("--layers", type=int, default=4, help="vit: transformer layers (default: 4)")
    parser.add_argument("--steps", type=int, default=100,
                        help="training steps (default: 100, about 1-1.5 min on 2 cores for the ViT; the workflow "
                             "gives the ResNet 250)")
    parser.add_argument("--batch-size", type=int, default=128, help="pairs per contrastive batch (default: 128)")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate (default: 1e-3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")


def run(args: argparse.Namespace) -> int:
    from vladapter.utils.arithmetic import threads

    if threads(args.threads):
        import torch

        torch.set_num_threads(threads(args.threads))  # the pinned count unless cpu_arithmetic is native
    images = args.images or args.captions.parent / "images"
    pixels, captions, _ = load_pairs(args.captions, images, args.image_size)
    if args.vision == "resnet":
        try:
            arch = dict(blocks=tuple(int(b) for b in args.blocks.split(",")))
        except ValueError:
            raise ConfigError(f"--blocks {args.blocks!r}: expected comma-separated integers such as 0,1,1") from None
    else:
        arch = dict(patch_size=args.patch_size, layers=args.layers)
    log = train_toy_clip(pixels, captions, args.output, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                         seed=args.seed, vision=args.vision, width=args.width, **arch)
    print(f"{args.output}: {len(pixels)} pairs, {args.steps} steps in {log['seconds']} s, "
          f"final loss {log['loss'][-1][1]}, in-batch retrieval accuracy {log['acc'][-1][1]}")
    return 0
