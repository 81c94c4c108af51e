"""The README's Python example runs as written (from a directory holding ``specs/``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def code_blocks(lang: str) -> list[str]:
    """The README's fenced code blocks in language ``lang`` ("" for unlabelled)."""
    blocks, current, inside = [], [], None
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            if inside is None:
                inside, current = line[3:].strip(), []
            else:
                if inside == lang:
                    blocks.append("\n".join(current) + "\n")
                inside = None
        elif inside is not None:
            current.append(line)
    return blocks


def test_python_example_runs(tmp_path: Path):
    example = next(b for b in code_blocks("python") if "txdsl.build(" in b)
    (tmp_path / "specs").symlink_to(ROOT / "specs")
    script = tmp_path / "example.py"
    script.write_text(example)
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("gpt2 12 ")
    assert lines[1] == "torch.Size([1, 8, 1000])"
    assert lines[-1] == "True"
    assert (tmp_path / "artifacts" / "tiny" / "manifest.json").is_file()


def test_readme_spec_examples_parse(tmp_path: Path):
    """Every ``.tx`` block in the README that defines a model checks."""
    import txdsl

    blocks = [b for b in code_blocks("") if re.search(r"^model \w+", b, flags=re.M)]
    assert len(blocks) >= 2
    for block in blocks:
        text = re.sub(r"\s+<-.*", "", block)  # the line-by-line notes are not .tx
        ir = txdsl.parse(text, base_dir=ROOT / "specs")
        assert ir.d_model > 0
