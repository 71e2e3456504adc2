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
]
