"""`python -m qbatch.jobs.demo` (what `make demo` runs)."""

import sys

from qbatch.jobs.demo.run_demo import main

sys.exit(main())
