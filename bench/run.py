"""``python bench/run.py [options]``: starts the benchmark's command line (bench.cli).

In: the command line (see ``--help`` and docs/benchmarks.md). Out: bench.cli's exit code.
The ``bench`` package is imported as installed (``pip install -e .``), so this file, run
as a script, needs nothing on sys.path beyond what the installation put there.
"""

import sys

from bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
