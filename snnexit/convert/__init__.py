"""ANN-to-SNN converters behind a registry (``convert(model, "qcfs")``): qcfs, qffs, max, robust; and the
conversion fixes that correct a converted network on training inputs (``snnexit.convert.fixes``)."""

from snnexit.convert import fixes, normalise, qcfs, qffs  # noqa: F401  (registration)
from snnexit.convert.base import CONVERTERS, convert, register_converter, replace_modules

__all__ = ["CONVERTERS", "convert", "register_converter", "replace_modules"]
