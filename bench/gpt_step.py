"""Benchmark: one training step of the tiny char GPT, TinyTorch vs PyTorch (../shared/perf-anchors.md §3d).

Vocabulary 65, context 64, width 128, 4 heads of 32, 2 pre-norm blocks (fused qkv Linear 128->384,
output Linear 128->128, causal attention with an explicit mask and softmax; MLP 128->512->GELU (exact,
erf)->128), learned token and position embeddings, final LayerNorm, untied head 128->65 without bias
(421,632 parameters: the anchor's 421,697 minus the head's 65 biases, on both sides); batch 32 x 64 =
2,048 tokens; Adam lr 3e-4; mean cross-entropy over all 2,048 positions. TinyTorch's step is
`tinytorch.train.loop.train_step` (what the milestone's Trainer runs) on the milestone's own model
builder (`build_model` in milestones/05_gpt_shakespeare.py): the same nn/optim/autograd code, no
special path. PyTorch's attention is written out (q k^T / sqrt(d), masked_fill -inf, softmax, @ v), as
the anchor's "explicit mask" row; its fused SDPA is about 15% faster again.

Both workers keep freed memory for reuse (module 12's `keep_freed_memory`, 4.7): with glibc's default
settings a step of either framework page-faults its temporaries in again every time, which costs the many
mid-sized temporaries of TinyTorch's step more than PyTorch's.

The frameworks never share a process: each round runs one worker per framework back to back, alternating
which goes first, and the tokens/s ratio TinyTorch/PyTorch is computed per round (target >= 0.5, aim 0.7).
Before timing, both compute the loss and gradients of the same weights in float64 and must agree to 1e-5.

    python bench/gpt_step.py                  # 5 rounds
    python bench/gpt_step.py --threads 1      # both frameworks on one thread each
    python bench/gpt_step.py --default-allocator  # both with glibc's malloc as it is (re-faults freed memory)
    python bench/gpt_step.py --profile        # where TinyTorch's step spends its time (per op, exclusive)
"""
import importlib.util
import json
import sys
import time
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/_harness.py, also when loaded by path
import _harness  # noqa: E402  (the benchmarks' shared harness)

ROOT = _harness.ROOT
VOCAB, CONTEXT, WIDTH, HEADS, LAYERS, BATCH, LR = 65, 64, 128, 4, 2, 32, 3e-4
TOKENS = BATCH * CONTEXT


def milestone_builder():
    sys.path.insert(0, str(ROOT / "milestones"))  # the milestone imports its shared plumbing, milestones/_common.py
    spec = importlib.util.spec_from_file_location("gpt_shakespeare", ROOT / "milestones" / "05_gpt_shakespeare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_model


def synthetic_batch(seed=0):
    import numpy as np
    tokens = np.random.default_rng(seed).integers(0, VOCAB, size=(BATCH, CONTEXT + 1))
    return tokens[:, :-1], tokens[:, 1:].reshape(-1)


def tinytorch_step(dtype="float32"):
    import numpy as np
    from tinytorch.core.tensor import Tensor
    from tinytorch.nn.losses import cross_entropy
    from tinytorch.optim import Adam
    from tinytorch.train.loop import train_step
    model = milestone_builder()(VOCAB, CONTEXT, WIDTH, HEADS, LAYERS, dtype=np.dtype(dtype), rng=np.random.default_rng(0))
    optimizer = Adam(model.parameters(), lr=LR)
    inputs, targets = synthetic_batch()
    x, y = Tensor(inputs, dtype=np.int64), Tensor(targets, dtype=np.int64)
    return (lambda: train_step(model, cross_entropy, optimizer, [(x, y)])), model


def torch_model(torch):
    nn, F = torch.nn, torch.nn.functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
            self.qkv, self.out = nn.Linear(WIDTH, 3 * WIDTH), nn.Linear(WIDTH, WIDTH)
            self.fc, self.proj = nn.Linear(WIDTH, 4 * WIDTH), nn.Linear(4 * WIDTH, WIDTH)
            self.register_buffer("blocked", ~torch.tril(torch.ones(CONTEXT, CONTEXT, dtype=torch.bool)))

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, HEADS, C // HEADS).permute(2, 0, 3, 1, 4)
            scores = (q @ k.transpose(-2, -1)) / (C // HEADS) ** 0.5
            weights = scores.masked_fill(self.blocked[:T, :T], float("-inf")).softmax(dim=-1)
            x = x + self.out((weights @ v).transpose(1, 2).reshape(B, T, C))
            return x + self.proj(F.gelu(self.fc(self.ln2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.pos = nn.Embedding(VOCAB, WIDTH), nn.Embedding(CONTEXT, WIDTH)
            self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
            self.ln_f, self.head = nn.LayerNorm(WIDTH), nn.Linear(WIDTH, VOCAB, bias=False)

        def forward(self, idx):
            x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
            for block in self.blocks:
                x = block(x)
            return self.head(self.ln_f(x)).reshape(-1, VOCAB)

    return GPT()


def torch_step(dtype="float32"):
    import torch
    torch.manual_seed(0)
    model = torch_model(torch).to(getattr(torch, dtype))
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    inputs, targets = synthetic_batch()
    x, y = torch.from_numpy(inputs), torch.from_numpy(targets)

    def step():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step, model


def copy_weights(torch, ours, theirs):
    """TinyTorch's weights into the PyTorch model (Linear weights are stored transposed in TinyTorch)."""
    gpt = ours.gpt
    pairs = [(gpt.tok_emb.weight, theirs.tok.weight, False), (gpt.pos_emb.weight, theirs.pos.weight, False),
             (gpt.ln_f.weight, theirs.ln_f.weight, False), (gpt.ln_f.bias, theirs.ln_f.bias, False),
             (gpt.head.weight, theirs.head.weight, True)]
    for mine, their in zip(gpt.blocks, theirs.blocks):
        for a, b in (("ln1", "ln1"), ("ln2", "ln2")):
            pairs += [(getattr(mine, a).weight, getattr(their, b).weight, False), (getattr(mine, a).bias, getattr(their, b).bias, False)]
        for linear, other in ((mine.attn.qkv, their.qkv), (mine.attn.out, their.out), (mine.mlp.fc, their.fc), (mine.mlp.proj, their.proj)):
            pairs += [(linear.weight, other.weight, True), (linear.bias, other.bias, False)]
    with torch.no_grad():
        for mine, their, transposed in pairs:
            their.copy_(torch.from_numpy(mine.data.T.copy() if transposed else mine.data.copy()))
    return pairs


def check_numerics():
    """float64, same weights and batch: the loss and every gradient must agree to 1e-5 (relative)."""
    import numpy as np
    import torch
    tt_step, ours = tinytorch_step("float64")
    pt_step, theirs = torch_step("float64")
    pairs = copy_weights(torch, ours, theirs)
    loss_tt, loss_pt = tt_step().loss, pt_step()
    worst = abs(loss_tt - loss_pt) / abs(loss_pt)
    for mine, their, transposed in pairs:
        grad = mine.grad.data.T if transposed else mine.grad.data
        worst = max(worst, float(np.max(np.abs(grad - their.grad.numpy())) / (np.max(np.abs(their.grad.numpy())) + 1e-30)))
    if worst > 1e-5:
        raise SystemExit(f"numerics check failed: TinyTorch and PyTorch differ by {worst:.2e} (relative)")
    return worst


def worker(framework, repeat, min_time):
    from tinytorch._measure import median_time
    step = (tinytorch_step if framework == "tinytorch" else torch_step)()[0]
    for _ in range(5):
        step()
    seconds = median_time(step, repeat=repeat, min_time=min_time)
    info = {"framework": framework, "ms_per_step": seconds * 1e3, "tokens_per_second": TOKENS / seconds}
    if framework == "torch":
        import torch
        info.update(threads=torch.get_num_threads(), version=torch.__version__)
    print(json.dumps(info))


def profile(steps=10):
    """Exclusive time per operation and phase through the dispatch hook, plus the optimizer step."""
    from collections import defaultdict
    from tinytorch.core.tensor import add_dispatch_hook
    step, model = tinytorch_step()
    for _ in range(3):
        step()
    exclusive, stack = defaultdict(float), []

    def timed(op, phase, run, a, kw):
        stack.append(0.0)
        start = time.perf_counter()
        result = run(*a, **kw)
        elapsed = time.perf_counter() - start
        children = stack.pop()
        exclusive[(op.__name__, phase)] += elapsed - children
        if stack:
            stack[-1] += elapsed
        return result

    start = time.perf_counter()
    with add_dispatch_hook(timed):
        for _ in range(steps):
            step()
    total = (time.perf_counter() - start) / steps
    print(f"TinyTorch step under the timing hook: {total * 1e3:.1f} ms ({TOKENS / total:,.0f} tokens/s)")
    for (name, phase), seconds in sorted(exclusive.items(), key=lambda item: -item[1])[:15]:
        print(f"  {name:32s} {phase:9s} {seconds / steps * 1e3:7.2f} ms  {seconds / steps / total:6.1%}")
    ops = sum(exclusive.values()) / steps
    print(f"  {'outside operations (optimizer, Python, graph walk)':42s} {(total - ops) * 1e3:7.2f} ms  {(total - ops) / total:6.1%}")


def main():
    args, load_before = _harness.start(__doc__, lambda args: worker(args.worker, args.repeat, args.min_time),
                                       lambda args: profile(), "; the ratio may be distorted")
    if args is None:
        return
    worst = check_numerics()
    metric = _harness.Metric("tokens_per_second", "tokens_per_s", "tokens/s", ",.0f")
    stats, rounds, _ = _harness.compare(__file__, args, metric, worst)
    summary = {"benchmark": "gpt_train_step", "model": "perf-anchors §3d tiny char GPT (head without bias), batch 32 x 64",
               **stats, "threads": args.threads or "default", "target_ratio": 0.5, "aim_ratio": 0.7,
               "numerics_worst_relative_difference": worst, "rounds": rounds}
    path = _harness.write_summary("gpt_step", args, load_before, summary)
    print(f"TinyTorch / PyTorch tokens/s: median {summary['median_ratio']:.2f}x over {len(rounds)} rounds "
          f"(range {summary['min_ratio']:.2f}-{summary['max_ratio']:.2f}; must >= 0.5x, aim 0.7x)")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
