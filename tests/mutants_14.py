"""Module 14's plausible wrong answers (see tests/mutants.py)."""
from tests.mutants import Mutant

MUTANTS = [
    Mutant("14_embeddings", "embedding-op",  # backward overwrites repeated rows instead of accumulating them
           "dweight[touched] = np.add.reduceat(rows[order], starts, axis=0)",
           "dweight[flat] = rows",
           frozenset({"test-embedding-backward"})),
    Mutant("14_embeddings", "embedding-op",  # negative indices wrap around to the end of the table
           "outside = (idx < 0) | (idx >= num)",
           "outside = idx >= num",
           frozenset({"test-embedding-lookup"})),
    Mutant("14_embeddings", "sinusoidal",  # frequencies 1 / 10000^(i/d) instead of 1 / 10000^(2i/d)
           "np.exp(-math.log(10000.0) * np.arange(0, dim, 2) / dim)",
           "np.exp(-math.log(10000.0) * np.arange(0, dim, 2) / (2 * dim))",
           frozenset({"test-sinusoidal"})),
]
