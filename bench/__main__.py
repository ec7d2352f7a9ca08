"""``python -m bench``: the benchmark's command line (bench.cli), as ``python bench/run.py``."""

import sys

from bench.cli import main

sys.exit(main())
