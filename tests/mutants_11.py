"""Module 11's plausible wrong answers (see tests/mutants.py)."""
from tests.mutants import Mutant

MUTANTS = [
    Mutant("11_normalization", "batch-norm",  # biased running variance (forgets m / (m - 1))
           "running_var.data += momentum * var.reshape(-1) * count / (count - 1)",
           "running_var.data += momentum * var.reshape(-1)",
           frozenset({"test-running-stats"})),
    Mutant("11_normalization", "batch-norm",  # batch statistics in eval mode too
           "mean, var = running_mean.data.reshape(channel), running_var.data.reshape(channel)",
           "mean, var = x.data.mean(axis=axes, keepdims=True), x.data.var(axis=axes, keepdims=True)",
           frozenset({"test-batch-norm-eval"})),
    Mutant("11_normalization", "layer-norm",  # standardised over the leading axes instead of the last ones
           "axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))",
           "axes = tuple(range(len(normalized_shape)))",
           frozenset({"test-layer-norm"})),
    Mutant("11_normalization", "standardize",  # the variance's share of the gradient dropped
           "grad_x = xhat * -mean_projection",
           "grad_x = np.zeros_like(xhat)",
           frozenset({"test-standardize", "test-layer-norm-backward", "test-batch-norm-backward"})),
    Mutant("11_normalization", "residual-block",  # the identity path dropped: a plain two-layer block
           "return relu(out + identity)",
           "return relu(out)",
           frozenset({"test-residual-block"})),
]
