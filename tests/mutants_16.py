"""Module 16's plausible wrong answers, and the graded cells that must catch them (and only them)."""
from tests.mutants import Mutant

MUTANTS = [
    Mutant("16_transformers", "block",  # residual added after LayerNorm (post-norm): the stream is normalised
           "        x = x + self.drop(self.attn(self.ln1(x), is_causal=True, cache=cache))   # (B, T, C)\n"
           "        x = x + self.mlp(self.ln2(x))                                           # (B, T, C)\n",
           "        x = self.ln1(x + self.drop(self.attn(x, is_causal=True, cache=cache)))   # (B, T, C)\n"
           "        x = self.ln2(x + self.mlp(x))                                           # (B, T, C)\n",
           frozenset({"test-block"})),
    Mutant("16_transformers", "gpt",  # a KV cache that forgets positions: new tokens get positions 0, 1, ...
           "self.pos_emb(T, start=start)",
           "self.pos_emb(T)",
           frozenset({"test-generate"})),
    Mutant("16_transformers", "generate",  # sampling from the first position's logits instead of the last
           "logits.data[:, -1].astype(np.float64)",
           "logits.data[:, 0].astype(np.float64)",
           frozenset({"test-generate"})),
]
