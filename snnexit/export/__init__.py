"""Exporting converted SNNs to other tools (NIR)."""

from snnexit.export.nir import export_nir, fold_batchnorm, import_nir, read_nir, to_nir

__all__ = ["export_nir", "fold_batchnorm", "import_nir", "read_nir", "to_nir"]
