"""Tools: fit, apply and rank with the equivalent linear mapping (``scelm.tl``)."""

from ._explain import explain_embedding
from ._parametric_tsne import parametric_tsne
from ._parametric_umap import parametric_umap
from ._perturb import deletion_curve, perturb
from ._rank_genes_elm import rank_genes_elm
from ._transform import transform

__all__ = ["parametric_umap", "parametric_tsne", "transform", "rank_genes_elm", "perturb", "deletion_curve", "explain_embedding"]
