"""``python -m snnexit.cli``: the same as the ``snnexit`` console script."""

from snnexit.cli import main_exit

main_exit()
