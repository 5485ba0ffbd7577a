"""``python -m snnexit``: the same as the ``snnexit`` console script."""

import sys

try:
    from snnexit.cli import main_exit
except KeyboardInterrupt:  # Ctrl-C while the command line itself is imported (main() covers the rest)
    print("interrupted", file=sys.stderr)
    sys.exit(130)

main_exit()
