"""Module 15's plausible wrong answers, and the graded cells that must catch them (and only them)."""
from tests.mutants import Mutant

MUTANTS = [
    Mutant("15_attention", "attention",  # attention without the 1/sqrt(d) scale (forward and rule agree)
           "scale = 1 / math.sqrt(q.shape[-1])",
           "scale = 1.0",
           frozenset({"test-attention-forward"})),
    Mutant("15_attention", "attention",  # the scale forgotten in the forward pass only: the rule no longer matches
           "scores = (q.data * q.dtype.type(scale)) @ np.swapaxes(k.data, -1, -2)",
           "scores = q.data @ np.swapaxes(k.data, -1, -2)",
           frozenset({"test-attention-forward", "test-attention-backward", "test-attention-dropout", "test-mha"})),
    Mutant("15_attention", "causal-mask",  # off by one: each query also sees the next token
           "k=num_keys - num_queries)",
           "k=num_keys - num_queries + 1)",
           frozenset({"test-causal-mask", "test-attention-mask", "test-mha", "test-kv-cache"})),
    Mutant("15_attention", "kv-cache",  # a cache that forgets positions: every update overwrites the start
           "start, self.length = self.length, self.length + k.shape[-2]",
           "start, self.length = 0, k.shape[-2]",
           frozenset({"test-kv-cache"})),
]
