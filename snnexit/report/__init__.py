"""Tables, figures and the run report."""

from snnexit.report.markdown import FIGURES, write_report
from snnexit.report.tables import TABLE1_HEADER, policy_label, table1_rows

__all__ = ["FIGURES", "TABLE1_HEADER", "policy_label", "table1_rows", "write_report"]
