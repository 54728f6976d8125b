"""Every option that takes one of a few strings (a ``Literal`` type for signatures and docs,
and the tuple it is checked against), and the stability thresholds tools and plots share.
Imports nothing heavy (``import scelm`` stays fast)."""

from typing import Literal, get_args

Activation = Literal["relu", "leaky_relu", "prelu"]
Init = Literal["pca", "spectral", "random"]  # or the name of an obsm key
Precision = Literal["float32", "bfloat16"]
Score = Literal["separation", "position", "magnitude", "weight", "expression"]
CorrMethod = Literal["benjamini-hochberg", "bonferroni"]
Protocol = Literal["both", "group"]
KnnMethod = Literal["auto", "exact", "nndescent"]

ACTIVATIONS = get_args(Activation)
INITS = get_args(Init)
PRECISIONS = get_args(Precision)
SCORES = get_args(Score)
CORR_METHODS = get_args(CorrMethod)
PROTOCOLS = get_args(Protocol)
KNN_METHODS = get_args(KnnMethod)

# Rankings' agreement is measured on the top-AGREEMENT_TOP genes (Jaccard index); a group
# whose stability is below UNSTABLE gets a warning (and a red title in scelm.pl.rank_genes_elm).
# Set from calibration data (benchmarks/bench_trust.py, 3-5 seeds, 60 groups of
# pbmc68k_reduced and simulations of 2,000 to 200,000 cells; docs/trust.md): every group
# measured below 0.5 across seeds (7: 0.09-0.45) reported at most 0.54, and 2 of the 48
# measured at 0.6 or more reported below 0.55.
UNSTABLE = 0.55
AGREEMENT_TOP = 10
# A gene is in a group's confident top genes when a fit from another random_state is
# expected to keep it in its top-AGREEMENT_TOP at least this often (``top_frequency``).
CONFIDENT = 0.9
# A group whose members agree on its direction from the reference less than this (the
# length of their mean unit direction, ``direction_agreement``) has no well-defined
# direction to project on: its ranking is flagged (warning, plots). Measured on
# pbmc68k_reduced and 10,000 simulated cells (2 seeds, members' last weights): groups ranked
# stably across seeds reach 0.84-1.00; the groups whose top 10 changed with the seed
# 0.55-0.77. With averaged weights (3 seeds) it flags pbmc68k_reduced's least stable group
# (CD34+, 0.69), but at 10,000 and 50,000 cells some flagged groups are stable: a warning,
# not a verdict (docs/trust.md).
DIRECTION_MIN = 0.8

# Why a score has no p-value (rank_genes_elm's uns[key]['params']['pvals']).
UNTESTED = {
    "magnitude": "no test: magnitude is unsigned and has no per-cell null",
    "weight": "no test: the weight's per-cell second moments are not accumulated",
    "expression": "no test: the expression part's per-cell second moments are not accumulated",
}
TESTS = {
    "separation": "Welch's t-test of the per-cell c_i . u, group against reference",
    "position": "one-sample t-test of the per-cell c_i . u in the group, against 0",
}
