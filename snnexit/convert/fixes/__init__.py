"""Conversion fixes: corrections of a converted SNN fitted on training inputs (``base`` explains)."""

from snnexit.convert.fixes import mean_bias, step_bias  # noqa: F401  (registration)
from snnexit.convert.fixes.base import (CONVERSION_FIXES, NO_FIX, FixReport, apply_conversion_fix, check_fix,
                                        default_fix, fix_names, register_conversion_fix, restore_conversion_fix)

__all__ = ["CONVERSION_FIXES", "NO_FIX", "FixReport", "apply_conversion_fix", "check_fix", "default_fix", "fix_names",
           "register_conversion_fix", "restore_conversion_fix"]
