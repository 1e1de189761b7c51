"""``python -m uploader LANDING_DIR``: see ``python -m uploader --help``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
