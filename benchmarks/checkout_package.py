"""Import `qbatch` from this checkout without installing it, for scripts that run on a bare machine (a lent
GPU box with torch and transformers but no qbatch install and no network to build one):

    import checkout_package; checkout_package.use_checkout()   # before any `import qbatch...`

The `qbatch` package is public_api/__init__.py with the checkout's root on its search path, so
`qbatch.pipeline` is ./pipeline, as pyproject.toml maps it. A qbatch already imported from this checkout
(the editable install of `make venv`) is left as it is."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def use_checkout() -> Path:
    """Make `import qbatch` load this checkout's code; returns the package's folder."""
    api = ROOT / "public_api"
    spec = importlib.util.find_spec("qbatch") if "qbatch" not in sys.modules else sys.modules["qbatch"].__spec__
    if spec is not None and spec.origin and Path(spec.origin).resolve() == api / "__init__.py":
        import qbatch  # noqa: F401 - the editable install of this same checkout

        return api
    for name in [m for m in sys.modules if m == "qbatch" or m.startswith("qbatch.")]:
        del sys.modules[name]  # another qbatch, installed elsewhere: never mix it with this checkout's
    spec = importlib.util.spec_from_file_location("qbatch", api / "__init__.py",
                                                  submodule_search_locations=[str(api), str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["qbatch"] = module
    spec.loader.exec_module(module)
    return api
