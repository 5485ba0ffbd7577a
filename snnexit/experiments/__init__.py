"""The papers' experiments built on runs: the Table 1 grid (table1), the cutoff-regulariser table
(cutoff) and the Table 2 timers (bench). Each module is imported by the command that runs it."""
