"""Module 12's mutants: plausible wrong answers and the graded cells that must catch them."""
from tests.mutants import Mutant

MUTANTS = [
    Mutant("12_memory", "checkpoint",  # the plain run: the segment's graph kept, nothing recomputed
           "    starts = tuple(_leaf_like(x) for x in inputs)\n",
           "    return fn(*inputs)\n",
           frozenset({"test-checkpoint-memory", "test-checkpoint-sequential"})),
    Mutant("12_memory", "loss-scaler",  # a step taken with overflowed gradients
           "        if not self.found_inf:\n            optimizer.step()",
           "        optimizer.step()",
           frozenset({"test-loss-scaler"})),
    Mutant("12_memory", "master-weights",  # master weights kept in float16
           "self.master = [Parameter(p.data.astype(np.float32)) for p in self.model_params]",
           "self.master = [Parameter(p.data.astype(dtype)) for p in self.model_params]",
           frozenset({"test-master-weights"})),
    Mutant("12_memory", "allreduce",  # gradients summed over the ranks instead of averaged
           "    total /= comm.Get_size()\n",
           "",
           frozenset({"test-allreduce"})),
    Mutant("12_memory", "shards",  # each rank shuffles with its own order: shards overlap and miss examples
           "order = np.random.default_rng([seed, epoch]).permutation(n_examples)",
           "order = np.random.default_rng([seed, epoch, rank]).permutation(n_examples)",
           frozenset({"test-shards"})),
    Mutant("12_memory", "autocast",  # everything cast down to float16, softmax and sums included
           "            if op in self.float32_ops:\n                args = _cast_tensors(args, self.dtype, np.float32)\n"
           "            elif op in self.low_precision_ops:",
           "            if op in self.float32_ops or op in self.low_precision_ops:",
           frozenset({"test-autocast"})),
]
