"""Plausible wrong answers, and the graded cells that must catch them (and only them).

Each mutant is the reference notebook with one solution cell edited. Graded, it must lose exactly
the points of the listed test cells and keep every other cell's points.
"""
import hashlib
import importlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Mutant:
    module: str
    cell: str  # grade_id of the solution cell that is edited
    old: str
    new: str
    fails: frozenset  # grade_ids of the test cells that must score 0

    @property
    def student(self):
        return f"mutant-{self.module[:2]}-{self.cell}-{hashlib.sha1(self.new.encode()).hexdigest()[:6]}"


MUTANTS = [
    Mutant("01_tensor", "reductions",
           "data = np.mean(a.data, axis=axis, keepdims=keepdims, dtype=_accumulator(a))",
           "data = np.sum(a.data, axis=axis, keepdims=keepdims, dtype=_accumulator(a)) / a.shape[0]",
           frozenset({"test-reductions"})),
    Mutant("01_tensor", "views",
           "fits = (a.size == known) if not unknown else (len(unknown) == 1 and known > 0 and a.size % known == 0)",
           "fits = a.size == known",
           frozenset({"test-views"})),
    Mutant("02_autograd", "arithmetic-rules",
           "return unbroadcast(grad, a.shape), unbroadcast(grad, b.shape)",
           "return grad, grad",
           frozenset({"test-arithmetic-rules", "test-gradcheck"})),
    Mutant("02_autograd", "topological-order",
           "        if id(node) in visited:\n            continue\n",
           "",
           frozenset({"test-topological-order"})),
    Mutant("01_tensor", "var",  # variance without Bessel's correction
           "data = squares / (a.size // max(np.size(squares), 1) - correction)",
           "data = squares / (a.size // max(np.size(squares), 1))",
           frozenset({"test-var"})),
    Mutant("01_tensor", "selection",  # masked_fill keeps the masked elements instead of the others
           "data = np.where(mask, np.asarray(value, dtype=a.dtype), a.data)",
           "data = np.where(mask, a.data, np.asarray(value, dtype=a.dtype))",
           frozenset({"test-selection"})),
    Mutant("02_autograd", "joining-rules",  # a window backward that drops overlaps (assigns instead of adding)
           "full[before + (slice(k, k + step * (windows - 1) + 1, step),)] += grad[..., k]",
           "full[before + (slice(k, k + step * (windows - 1) + 1, step),)] = grad[..., k]",
           frozenset({"test-joining-rules"})),
    Mutant("02_autograd", "more-reduction-rules",  # var's gradient without Bessel's correction
           "(2 / (count - correction))",
           "(2 / count)",
           frozenset({"test-more-reduction-rules"})),
    Mutant("02_autograd", "limit-rules",  # maximum gives a tie's whole gradient to a
           "share = _larger_share(a.data, b.data)",
           "share = a.data >= b.data",
           frozenset({"test-limit-rules"})),
    Mutant("02_autograd", "view-rules",  # every index treated as a slice: repeated indices counted once
           "    if _is_basic(index):\n        full[index] = grad\n    else:\n        np.add.at(full, index, grad)\n",
           "    full[index] = grad\n",
           frozenset({"test-view-rules", "test-gradcheck"})),
    Mutant("03_activations", "softmax",
           "shifted = x.data - x.data.max(axis=axis, keepdims=True)",
           "shifted = x.data",
           frozenset({"test-softmax"})),
    Mutant("03_activations", "gelu",  # the earlier framework's sigmoid-approximation forward
           "cdf = normal_cdf(x.data)",
           "cdf = 1 / (1 + np.exp(-1.702 * x.data))",
           frozenset({"test-gelu"})),
    Mutant("04_layers", "dropout",
           "scale = 0.0 if self.p == 1 else 1 / (1 - self.p)",
           "scale = 1.0",
           frozenset({"test-dropout"})),
    Mutant("04_layers", "module",  # a tied weight counted twice
           "if isinstance(member, Parameter) and id(member) not in seen:",
           "if isinstance(member, Parameter):",
           frozenset({"test-module-tree", "test-state-dict"})),
    Mutant("04_layers", "module",  # loads part of a bad state before refusing it
           "        if problems:\n",
           "        for name, target in targets.items():\n"
           "            if name in arrays and arrays[name].shape == target.shape:\n"
           "                target.data[...] = arrays[name]\n"
           "        if problems:\n",
           frozenset({"test-state-dict"})),
    Mutant("05_losses", "cross-entropy",  # log of a softmax that overflows
           "    log_probs = log_softmax(logits, axis=-1)",
           "    log_probs = (logits.exp() / logits.exp().sum(axis=1, keepdims=True)).log()",
           frozenset({"test-cross-entropy"})),
    Mutant("06_optimizers", "adam",  # Adam without bias correction (AdamW shares the step)
           "        step_size = float(self.lr) / (1 - self.beta1 ** t)\n"
           "        denom = np.sqrt(v) / math.sqrt(1 - self.beta2 ** t) + self.eps",
           "        step_size = float(self.lr)\n"
           "        denom = np.sqrt(v) + self.eps",
           frozenset({"test-adam", "test-adamw"})),
    Mutant('07_dataloader', 'dataloader',  # the same shuffle every epoch
           'return np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))',
           'return np.random.default_rng(self.seed).permutation(len(self.dataset))',
           frozenset({'test-dataloader'})),
    Mutant('07_dataloader', 'random-crop',  # one crop offset for the whole batch
           'return windows[np.arange(n), :, rows, cols]',
           'return windows[np.arange(n), :, rows[0], cols[0]]',
           frozenset({'test-random-crop'})),
    Mutant('07_dataloader', 'parse-idx',  # trailing bytes accepted
           '    if len(raw) != expected:\n',
           '    if len(raw) < expected:\n',
           frozenset({'test-parse-idx'})),
    Mutant('07_dataloader', 'check-member',  # links extracted from an archive
           'if not (member.isfile() or member.isdir()):',
           'if False:',
           frozenset({'test-check-member'})),
    Mutant('07_dataloader', 'normalize-flip',  # flip overwrites its input
           'out = images.copy()',
           'out = images',
           frozenset({'test-normalize-flip'})),
    Mutant('08_training', 'train-step',  # uneven micro-batches weighted equally
           '(loss * (len(targets) / total)).backward()',
           '(loss * (1 / len(micro_batches))).backward()',
           frozenset({'test-train-step'})),
    Mutant('08_training', 'schedule',  # warm-up off by one
           'return self.base_lr * (step + 1) / self.warmup_steps',
           'return self.base_lr * step / self.warmup_steps',
           frozenset({'test-schedule'})),
    Mutant('08_training', 'clip',  # clipping also scales small gradients up
           '    if scale < 1:\n        for g in grads:',
           '    if True:\n        for g in grads:',
           frozenset({'test-clip'})),
    Mutant('08_training', 'checkpoint',  # random generators not restored on resume
           '        for name, generator in generators.items():\n            generator.bit_generator.state = meta["generators"][name]\n    except',
           '    except',
           frozenset({'test-trainer'})),
    Mutant('08_training', 'evaluate',  # evaluation in training mode
           '    model.eval()\n',
           '\n',
           frozenset({'test-evaluate'})),
    Mutant('08_training', 'atomic-save',  # temporary file left behind on failure
           '        if os.path.exists(tmp):\n            os.remove(tmp)\n',
           '        pass\n',
           frozenset({'test-atomic-save'})),
    Mutant('08_training', 'atomic-save',  # writes straight into the checkpoint
           '    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")',
           '    fd, tmp = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), str(path)',
           frozenset({'test-atomic-save'})),
]

# Modules 09 on keep their mutants in tests/mutants_NN.py (a list MUTANTS each), one file per module.
for _path in sorted(Path(__file__).parent.glob("mutants_[0-9][0-9].py")):
    MUTANTS += importlib.import_module(f"tests.{_path.stem}").MUTANTS
