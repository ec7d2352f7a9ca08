"""``python -m mailflow``: the ``mailflow`` command (``mailflow.cli.main``)."""

import sys

from mailflow.cli import main

sys.exit(main())
