"""Plots (``scelm.pl``), following scanpy's conventions: ``show``, ``return_fig``, ``ax``."""

from ._cell import cell
from ._diagnostics import fidelity, reconstruction, training
from ._embedding import contributions, gene_arrows
from ._interactive import interactive
from ._ranking import compare_de, rank_genes_elm, rank_genes_elm_dotplot
from ._shifts import condition_shifts
from ._trust import deletion_curve, perturbation

__all__ = [
    "contributions",
    "gene_arrows",
    "rank_genes_elm",
    "rank_genes_elm_dotplot",
    "cell",
    "compare_de",
    "training",
    "reconstruction",
    "perturbation",
    "deletion_curve",
    "condition_shifts",
    "fidelity",
    "interactive",
]
