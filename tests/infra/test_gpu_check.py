"""benchmarks/gpu_check.py --cpu-smoke runs from outside the repository, as on a bare GPU box with no
qbatch installed, and reports parity. Only the parity numbers are asserted, never timings."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.infra.manifest_files import REPO


def test_cpu_smoke_passes_its_parity_checks(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="2", TOKENIZERS_PARALLELISM="false")
    script = REPO / "benchmarks" / "gpu_check.py"
    # A bare box: this venv's editable-install finder is taken away before the script runs.
    bare = ("import runpy, sys\n"
            "sys.meta_path[:] = [f for f in sys.meta_path if 'Editable' not in getattr(f, '__name__', '')]\n"
            f"sys.argv = [{str(script)!r}, '--cpu-smoke']\n"
            f"runpy.run_path({str(script)!r}, run_name='__main__')\n"
            "assert sys.modules['qbatch'].__file__.endswith('public_api/__init__.py')\n")
    out = subprocess.run([sys.executable, "-c", bare], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=170)
    assert out.returncode == 0, out.stdout + out.stderr
    cosine = re.search(r"packed-vs-padded cosine \(min\)\s*\|\s*([-0-9.]+)", out.stdout)
    assert cosine, out.stdout
    assert float(cosine.group(1)) >= 0.999
    leak = re.search(r"negative control cosine \(min\)\s*\|\s*([-0-9.]+)", out.stdout)
    assert float(leak.group(1)) < 0.999  # the parity check can see a leak across texts
    diff = re.search(r"shared-vs-full \|score diff\| \(max\)\s*\|\s*([-0-9.e+]+)", out.stdout)
    assert float(diff.group(1)) <= 1e-4
    for row in ("padded SDPA tokens/s", "full pairs/s", "shared-prefix pairs/s"):
        assert row in out.stdout
