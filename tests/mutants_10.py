"""Module 10's plausible wrong answers (see tests/mutants.py)."""
from tests.mutants import Mutant

MUTANTS = [
    Mutant("10_convolutions", "conv2d",  # col2im that ignores the stride
           "dxp[:, :, p:p + sh * (oh - 1) + 1:sh, q:q + sw * (ow - 1) + 1:sw] +=",
           "dxp[:, :, p:p + oh, q:q + ow] +=",
           frozenset({"test-conv2d-backward"})),
    Mutant("10_convolutions", "conv2d",  # col2im that crops the wrong border (ignores the padding)
           "return dxp[:, :, ph:ph + height, pw:pw + width]",
           "return dxp[:, :, :height, :width]",
           frozenset({"test-conv2d-backward"})),
    Mutant("10_convolutions", "max-pool",  # the gradient sent to every tied maximum
           "        winner &= unclaimed  # only the first maximum of a window wins\n",
           "",
           frozenset({"test-max-pool"})),
    Mutant("10_convolutions", "layers",  # a multiply-add counted as one FLOP
           "return 2 * output.size * layer.in_channels",
           "return output.size * layer.in_channels",
           frozenset({"test-layers"})),
]
