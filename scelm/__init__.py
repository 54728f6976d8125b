"""scelm: interpretable parametric UMAP for scanpy.

``scelm.tl`` fits and applies the model, ``scelm.get`` reads Jacobians and contributions,
``scelm.pl`` plots, ``scelm.datasets`` provides example data. torch is imported only when
a function needs it.
"""

from . import datasets, get, pl, tl
from ._settings import settings

__version__ = "0.3.0"
__all__ = ["tl", "get", "pl", "datasets", "settings", "__version__"]
