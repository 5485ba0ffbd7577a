"""Exporting converted SNNs to other tools (NIR), and running NIR graphs.

Imports run one way: ``standard`` -> ``nir_import`` -> ``nir``.
"""

from snnexit.export.nir import export_nir, fold_all_batchnorm, read_nir, to_nir
from snnexit.export.nir_import import import_nir

__all__ = ["export_nir", "fold_all_batchnorm", "import_nir", "read_nir", "to_nir"]
