"""Plausible wrong answers, and the graded cells that must catch them (and only them).

Each mutant is the reference notebook with one solution cell edited. Graded, it must lose exactly
the points of the listed test cells and keep every other cell's points.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    module: str
    cell: str  # grade_id of the solution cell that is edited
    old: str
    new: str
    fails: frozenset  # grade_ids of the test cells that must score 0

    @property
    def student(self):
        return f"mutant-{self.module[:2]}-{self.cell}-{abs(hash(self.new)) % 1000:03d}"


MUTANTS = [
    Mutant("01_tensor", "reductions",
           "data = np.asarray(np.mean(a.data, axis=axis, keepdims=keepdims))",
           "data = np.asarray(np.sum(a.data, axis=axis, keepdims=keepdims) / a.shape[0])",
           frozenset({"test-reductions"})),
    Mutant("01_tensor", "views",
           "fits = (a.size == known) if not unknown else (len(unknown) == 1 and known > 0 and a.size % known == 0)",
           "fits = a.size == known",
           frozenset({"test-views"})),
    Mutant("02_autograd", "elementwise-rules",
           "return unbroadcast(grad, a.shape), unbroadcast(grad, b.shape)",
           "return grad, grad",
           frozenset({"test-elementwise-rules", "test-gradcheck"})),
    Mutant("02_autograd", "topological-order",
           "        if id(node) in visited:\n            continue\n",
           "",
           frozenset({"test-topological-order"})),
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
]
