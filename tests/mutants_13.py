"""Module 13's plausible wrong answers (see tests/mutants.py)."""
from tests.mutants import Mutant

# The heap pops the smallest count: a min-heap without the minus signs merges the least frequent pair.
_MOST_FREQUENT = """    heap = [(-count, *pair) for pair, count in counts.items()]
    heapq.heapify(heap)
    merges = []
    while len(merges) < vocab_size - 256 and heap:
        negative, a, b = heapq.heappop(heap)
        pair = (a, b)
        if counts.get(pair, 0) != -negative or negative == 0:"""
_LEAST_FREQUENT = (_MOST_FREQUENT.replace("(-count, *pair)", "(count, *pair)")
                   .replace("!= -negative or negative == 0", "!= negative or negative == 0"))

MUTANTS = [
    Mutant("13_tokenization", "bpe-train", _MOST_FREQUENT, _LEAST_FREQUENT, frozenset({"test-bpe-train"})),
    Mutant("13_tokenization", "bpe-tokenizer",  # decode drops the last token
           "map(self.token_bytes.__getitem__, ids.tolist())",
           "map(self.token_bytes.__getitem__, ids[:-1].tolist())",
           frozenset({"test-bpe-decode"})),
    Mutant("13_tokenization", "text-dataset",  # one window too many: the last target is short
           "return len(self.tokens) - self.block_size\n",
           "return len(self.tokens) - self.block_size + 1\n",
           frozenset({"test-text-dataset"})),
]
