"""Module 09's plausible wrong answers (see tests/mutants.py)."""
from tests.mutants import Mutant

MUTANTS = [
    Mutant("09_profiling", "timer",  # one sample passed off as a measurement
           "    return Timing(samples)",
           "    return Timing(samples[-1:])",
           frozenset({"test-timer"})),
    Mutant("09_profiling", "linear-flops",  # a multiply-add counted as one FLOP
           "return 2 * rows * layer.in_features * layer.out_features",
           "return rows * layer.in_features * layer.out_features",
           frozenset({"test-flops"})),
    Mutant("09_profiling", "profiler",  # nested ops' time charged to the enclosing op as well
           "            if self._inner:\n                self._inner[-1] += elapsed\n",
           "",
           frozenset({"test-profiler"})),
]
