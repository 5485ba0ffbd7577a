"""``python -m snnexit``: the same as the ``snnexit`` console script."""

import sys

from snnexit import interrupt

interrupt.install()
try:
    from snnexit.cli import main_exit
except BaseException:  # Ctrl-C while the command line itself is imported (main() covers the rest)
    if not interrupt.was_interrupted():
        raise
    print("interrupted", file=sys.stderr)
    sys.exit(130)

main_exit()
