"""The README's "Bring a Hugging Face model" example runs as written, from any directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def hf_example() -> str:
    sys.path.insert(0, str(ROOT / "tests"))
    from test_readme import code_blocks

    return next(b for b in code_blocks("python") if "import-hf" in b)


def test_bring_a_hugging_face_model_runs(tmp_path: Path):
    script = tmp_path / "example.py"
    script.write_text(hf_example())
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert 'import "zoo:llama.tx"' in out and "model imported extends llama {" in out
    printed = next(b for b in code_blocks_unlabelled() if "# converted from Hugging Face" in b)
    assert printed in out  # the README shows what the example prints
    lines = out.strip().splitlines()
    assert lines[-3] == "True"  # logits within 1e-4 of Hugging Face's
    assert lines[-2] == "True False"  # the sliding window changes only positions past it
    assert lines[-1] == "torch.Size([2, 12, 500])"


def code_blocks_unlabelled() -> list[str]:
    from test_readme import code_blocks

    return code_blocks("")
