"""``python -m crossencoder``: the ``crossencoder`` command, for environments whose scripts folder is not on PATH."""

import sys

from crossencoder.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
