"""ANN-to-SNN converters behind a registry (``convert(model, "qcfs")``): qcfs, qffs, max, robust."""

from snnexit.convert import normalise, qcfs, qffs  # noqa: F401  (registration)
from snnexit.convert.base import CONVERTERS, convert, register_converter, replace_modules

__all__ = ["CONVERTERS", "convert", "register_converter", "replace_modules"]
