"""`python -m jobs.demo` (what `make demo` runs)."""

import sys

from jobs.demo.run_demo import main

sys.exit(main())
