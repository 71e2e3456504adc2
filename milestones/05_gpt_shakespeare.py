"""Milestone 5, the transformer era (2017-2019): a character-level GPT trained on tiny-shakespeare.

Vaswani et al. (2017) replaced recurrence with attention; Radford et al. (2018, 2019) trained decoder-only
transformers to predict the next token. This script trains one, character by character, on the works
of Shakespeare (1,115,394 characters; Karpathy's char-rnn corpus) with nothing but the TinyTorch you
built: Tensor and autograd (01-02), GELU (03), Linear and Dropout (04), cross-entropy (05), AdamW (06),
the Trainer with warm-up + cosine schedule, clipping and checkpoints (08), LayerNorm (11), the
character tokenizer and text windows (13), embeddings (14), attention and the KV cache (15), and the
GPT with its sampler (16).

The split is nanoGPT's: the first 90% of the text trains, the last 10% validates (every choice is made
on it; there is no test set). The validation loss is the mean cross-entropy per character over all
non-overlapping 64-character windows of the validation text. An "epoch" here is a fixed number of
optimizer steps on randomly placed windows (as nanoGPT samples its batches), after which the model is
evaluated, a sample is printed, and a checkpoint is written. Every run writes into its own folder under
milestones/runs/ (gitignored): metrics.jsonl, curves.png, checkpoint.npz (resumable), best.npz (best
validation accuracy), config.json, samples.txt and summary.json. Ctrl-C stops cleanly after saving.

    python milestones/05_gpt_shakespeare.py                 # the full run
    python milestones/05_gpt_shakespeare.py --quick         # smoke test (well under a minute)
    python milestones/05_gpt_shakespeare.py --resume milestones/runs/<run>/checkpoint.npz
    python milestones/05_gpt_shakespeare.py --prompt "ROMEO:" --checkpoint milestones/runs/<run>/best.npz

Data: read-only copies are looked for in $TINYTORCH_DATA and ../shared/data, then the cache
$TINYTORCH_CACHE (default ~/.cache/tinytorch); otherwise the canonical file is downloaded and checked
(see tinytorch.text.tokenizers.load_tiny_shakespeare).
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from _common import MilestoneError, clean_quick_run, load_data, resume, resume_command, run, timing

HERE = Path(__file__).resolve().parent
MODEL_KEYS = ("context", "width", "heads", "layers", "dropout")


def build_model(vocab_size, context=64, width=128, heads=4, layers=4, dropout=0.0, dtype=np.float32, rng=None):
    """A GPT whose forward returns flat logits (B*T, vocab): what cross_entropy and the Trainer expect."""
    from tinytorch.nn.layers import Module
    from tinytorch.nn.transformer import GPT

    class FlatLogits(Module):
        def __init__(self):
            super().__init__()
            self.gpt = GPT(vocab_size, context, width, heads, layers, dropout=dropout, dtype=dtype, rng=rng)

        def forward(self, idx):
            return self.gpt(idx).reshape(-1, vocab_size)  # (B*T, vocab)

    return FlatLogits()


class RandomWindows:
    """Batches of windows at random offsets of the training text (nanoGPT's get_batch), `steps` per epoch.

    Batch b of epoch e is drawn from a generator seeded with (seed, e, b): a resumed run continues with
    exactly the batches it would have seen. Shaped like a DataLoader for the Trainer."""

    shuffle = True

    def __init__(self, dataset, batch_size, steps, seed=0):
        self.dataset, self.batch_size, self.steps, self.seed = dataset, batch_size, steps, seed

    def __len__(self):
        return self.steps

    def batches(self, epoch, start=0):
        from tinytorch.core.tensor import Tensor
        for index in range(start, self.steps):
            rng = np.random.default_rng([self.seed, epoch, index])
            x, y = self.dataset.get_batch(rng.integers(0, len(self.dataset), size=self.batch_size))
            yield Tensor(x, dtype=np.int64), Tensor(y.reshape(-1), dtype=np.int64)


def validation_windows(ids, context, limit=None):
    """Every non-overlapping window of the validation text as (inputs (N, T), flat targets (N*T,)) batches."""
    from tinytorch.data import DataLoader, TensorDataset
    count = (len(ids) - 1) // context if limit is None else min(limit, (len(ids) - 1) // context)
    x = ids[:count * context].reshape(count, context)
    y = ids[1:count * context + 1].reshape(count, context)

    class Flat(TensorDataset):
        def get_batch(self, indices):
            inputs, targets = super().get_batch(indices)
            return inputs, targets.reshape(-1)

    return DataLoader(Flat(x, y), batch_size=64)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=24, help="evaluation periods (default 24)")
    parser.add_argument("--steps-per-epoch", type=int, default=250, help="optimizer steps per epoch (default 250)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--context", type=int, default=64, help="characters per training window (default 64)")
    parser.add_argument("--width", type=int, default=128, help="embedding width C (default 128)")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of AdamW (default 2e-3)")
    parser.add_argument("--min-lr", type=float, default=1e-4, help="learning rate at the end of the cosine")
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--warmup-steps", type=int, default=100)
    parser.add_argument("--clip-norm", type=float, default=1.0, help="global gradient-norm clipping (default 1.0)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the initialisation and the batches")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: a 2-layer 64-wide model, 3 epochs of 20 steps, 50 validation windows")
    parser.add_argument("--sample-tokens", type=int, default=300, help="characters generated for the samples")
    parser.add_argument("--run-dir", type=Path, help="output folder (default milestones/runs/gpt_shakespeare-<time>)")
    parser.add_argument("--resume", type=Path, help="continue from a checkpoint.npz written by an earlier run")
    parser.add_argument("--prompt", help="generate from --checkpoint, starting with this text, and exit")
    parser.add_argument("--checkpoint", type=Path, help="a best.npz/checkpoint.npz of an earlier run (for --prompt)")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default 0.8)")
    parser.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest characters only")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (default: shown on a terminal)")
    parser.add_argument("--keep-checkpoints", action="store_true",
                        help="keep a --quick run's checkpoints (default: removed when it finishes)")
    args = parser.parse_args(argv)
    given = set(argv if argv is not None else sys.argv[1:])
    if args.quick:
        for flag, value in (("--epochs", 3), ("--steps-per-epoch", 20), ("--layers", 2), ("--width", 64),
                            ("--sample-tokens", 100), ("--warmup-steps", 10)):
            if flag not in given:
                setattr(args, flag[2:].replace("-", "_"), value)
    return args


def check(args):
    if args.prompt is not None and args.checkpoint is None:
        raise MilestoneError("--prompt needs --checkpoint PATH (a best.npz or checkpoint.npz of an earlier run)")
    for name in ("epochs", "steps_per_epoch", "batch_size", "context", "width", "heads", "layers", "sample_tokens"):
        if getattr(args, name) < 1:
            raise MilestoneError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.width % args.heads:
        raise MilestoneError(f"--width {args.width} must be divisible by --heads {args.heads}")
    if not 0 <= args.dropout < 1:
        raise MilestoneError(f"--dropout must lie in [0, 1), got {args.dropout}")
    if args.temperature <= 0:
        raise MilestoneError(f"--temperature must be positive, got {args.temperature}")
    for path in (args.resume, args.checkpoint):
        if path is not None and not path.is_file():
            raise MilestoneError(f"{path}: no such checkpoint (a run writes checkpoint.npz and best.npz into its run folder)")
        if path is not None:
            from tinytorch.train.loop import read_checkpoint
            read_checkpoint(path)  # a damaged file is refused before any data is loaded


def sample(model, tokenizer, prompt, tokens, args, seed=0):
    """`prompt` continued by `tokens` sampled characters (with the KV cache)."""
    ids = tokenizer.encode(prompt)[None, :]
    out = model.gpt.generate(ids, tokens, temperature=args.temperature, top_k=args.top_k,
                             rng=np.random.default_rng(seed))
    return tokenizer.decode(out[0])


def generate_from_checkpoint(args, tokenizer):
    from tinytorch.train.loop import read_checkpoint
    config_path = args.checkpoint.parent / "config.json"
    if not config_path.is_file():
        raise MilestoneError(f"{config_path}: missing; --checkpoint must point into a run folder of this milestone")
    config = json.loads(config_path.read_text())
    model = build_model(tokenizer.vocab_size, **{k: config[k] for k in MODEL_KEYS})
    arrays, _ = read_checkpoint(args.checkpoint)
    model.load_state_dict({k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")})
    try:
        tokenizer.encode(args.prompt)
    except ValueError as error:
        raise MilestoneError(f"--prompt: {error}") from None
    print(sample(model, tokenizer, args.prompt, args.sample_tokens, args, seed=args.seed))
    return 0


def main(argv=None):
    from tinytorch.nn.layers import manual_seed
    from tinytorch.nn.losses import cross_entropy
    from tinytorch.optim import AdamW
    from tinytorch.text.tokenizers import CharTokenizer, TextDataset, load_tiny_shakespeare
    from tinytorch.train.loop import Trainer, WarmupCosine

    args = parse_args(argv)
    check(args)
    started = time.perf_counter()
    train_text, val_text = load_data(lambda: load_tiny_shakespeare(progress=not args.no_progress), "tiny-shakespeare")
    tokenizer = CharTokenizer(train_text + val_text)  # nanoGPT: the sorted characters of the whole corpus
    if args.prompt is not None:
        return generate_from_checkpoint(args, tokenizer)
    manual_seed(args.seed)
    train_ids, val_ids = tokenizer.encode(train_text), tokenizer.encode(val_text)
    train_loader = RandomWindows(TextDataset(train_ids, args.context), args.batch_size, args.steps_per_epoch, args.seed)
    val_loader = validation_windows(val_ids, args.context, limit=50 if args.quick else None)
    model = build_model(tokenizer.vocab_size, **{k: getattr(args, k) for k in MODEL_KEYS})
    optimizer = AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=args.weight_decay)
    steps = args.epochs * args.steps_per_epoch
    schedule = WarmupCosine(optimizer, total_steps=steps, warmup_steps=min(args.warmup_steps, steps), min_lr=args.min_lr)
    run_dir = args.run_dir or (args.resume.parent if args.resume else HERE / "runs" / f"gpt_shakespeare-{time.strftime('%Y%m%d-%H%M%S')}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, indent=1) + "\n")
    samples = []

    def log(record):
        text = sample(model, tokenizer, "\n", args.sample_tokens, args, seed=record["epoch"])
        samples.append(f"--- epoch {record['epoch']} (val loss {record['val_loss']:.4f}) ---\n{text}\n")
        (run_dir / "samples.txt").write_text("\n".join(samples))
        print(f"epoch {record['epoch']:3d}/{args.epochs}  step {record['step']:6d}  train loss {record['train_loss']:.4f}  "
              f"|  val loss {record['val_loss']:.4f} acc {record['val_accuracy']:.3f}  |  lr {record['lr']:.2e}  "
              f"{record['epoch_seconds']:5.1f} s ({record['images_per_second']:,.0f} tokens/s)", flush=True)  # targets are tokens
        print("   " + text[1:120].replace("\n", "\n   "), flush=True)

    progress = not args.no_progress and sys.stderr.isatty()
    trainer = Trainer(model, optimizer, cross_entropy, train_loader, val_loader, schedule, clip_norm=args.clip_norm,
                      run_dir=run_dir, progress=progress, log=log)
    params = sum(p.size for p in model.parameters())
    print(f"char GPT: {params:,} parameters ({args.layers} layers, {args.heads} heads, width {args.width}, context "
          f"{args.context}); vocabulary {tokenizer.vocab_size}; {len(train_ids):,} training and {len(val_ids):,} "
          f"validation characters; {args.epochs} epochs x {args.steps_per_epoch} steps x {args.batch_size} windows; "
          f"run folder {run_dir}", flush=True)
    resume(trainer, args)
    trainer.fit(args.epochs)
    if trainer.stop_requested:
        print(resume_command(__file__, run_dir / "checkpoint.npz", argv))
        return 130
    wall = time.perf_counter() - started
    final = trainer.history[-1]
    best = min(trainer.history, key=lambda r: r["val_loss"])
    summary = {"val_loss": final["val_loss"], "train_loss": final["train_loss"], "val_accuracy": final["val_accuracy"],
               "best_val_loss": best["val_loss"], "best_epoch": best["epoch"], "parameters": params,
               "epochs": args.epochs, "steps": args.epochs * args.steps_per_epoch, "wall_seconds": wall,
               "train_seconds": sum(r["epoch_seconds"] for r in trainer.history),
               "cpu_seconds_this_process": time.process_time(), "load_average_at_end": os.getloadavg(),
               "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "command": " ".join(["python", *sys.argv]) if argv is None else None}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"validation loss {final['val_loss']:.4f} (train {final['train_loss']:.4f}) after {summary['steps']} steps; "
          f"{timing(wall, trainer.history, args.resume)}")
    print(f"samples: {run_dir / 'samples.txt'}  curves: {run_dir / 'curves.png'}  metrics: {run_dir / 'metrics.jsonl'}")
    clean_quick_run(args, run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
