"""The interop tests need transformers (the ``dev`` extra); quiet its loading logs."""

from __future__ import annotations

import pytest

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()
