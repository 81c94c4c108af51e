"""Class 5: replacing an artifact is atomic; killed builds are cleaned up; builds take turns.

A kill is simulated where it hurts: a subprocess whose swap is patched to
``os._exit`` at the injection point (no cleanup handler runs, as with
``kill -9``), not by timing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import txdsl
from hardening_helpers import ROOT, clean_env, tiny_spec, write_spec
from txdsl.back import replace
from txdsl.back.artifact import check_integrity

KILLED_BUILD = textwrap.dedent("""
    import os, sys
    import txdsl
    import txdsl.back.replace as r
    mode, spec, out, seed = sys.argv[1:]
    if mode == "after_exchange":
        r._after_exchange = lambda: os._exit(137)
    elif mode == "between_renames":
        r.exchange = lambda a, b: False          # a filesystem without RENAME_EXCHANGE
        r._between_renames = lambda: os._exit(137)
    txdsl.build(spec, output=out, seed=int(seed), progress=False)
""")


def _killed_build(tmp_path: Path, mode: str, spec: Path, out: Path, seed: int) -> int:
    script = tmp_path / "killed_build.py"
    script.write_text(KILLED_BUILD)
    r = subprocess.run([sys.executable, str(script), mode, str(spec), str(out), str(seed)],
                       cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=180)
    return r.returncode


def _temporaries(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def test_exchange_swaps_two_directories(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "from_a").touch()
    if not replace.exchange(tmp_path / "a", tmp_path / "b"):
        pytest.skip("this filesystem has no RENAME_EXCHANGE")
    assert os.listdir(tmp_path / "b") == ["from_a"] and os.listdir(tmp_path / "a") == []


def test_killed_after_the_swap_the_new_artifact_is_in_place(tmp_path):
    spec, out = write_spec(tmp_path), tmp_path / "out" / "tiny"
    txdsl.build(spec, output=out, seed=1, progress=False)
    assert _killed_build(tmp_path, "after_exchange", spec, out, 2) == 137
    assert check_integrity(out).seed == 2  # complete, and the new one
    lock, stale = _temporaries(out)  # a killed build leaves its lock file, harmlessly
    assert stale.startswith(".tiny.partial-") and lock == ".tiny.lock"  # the old artifact
    txdsl.build(spec, output=out, seed=3, progress=False)
    assert check_integrity(out).seed == 3 and _temporaries(out) == []


def test_killed_between_the_fallbacks_renames_the_next_build_recovers(tmp_path):
    spec, out = write_spec(tmp_path), tmp_path / "out" / "tiny"
    txdsl.build(spec, output=out, seed=1, progress=False)
    assert _killed_build(tmp_path, "between_renames", spec, out, 2) == 137
    assert not out.exists()  # the fallback's window (documented)
    assert any(t.startswith(".tiny.old-") for t in _temporaries(out))
    stages = []
    with pytest.raises(RuntimeError, match="stop"):  # recovery happens before any new write
        def stop(stage):
            stages.append(stage)
            if stage == "write":
                raise RuntimeError("stop")
        txdsl.build(spec, output=out, seed=3, progress=stop)
    txdsl.build(spec, output=out, seed=3, progress=False)
    assert check_integrity(out).seed == 3 and _temporaries(out) == []


def test_recover_puts_the_old_artifact_back(tmp_path):
    spec, out = write_spec(tmp_path), tmp_path / "tiny"
    txdsl.build(spec, output=out, seed=1, progress=False)
    assert _killed_build(tmp_path, "between_renames", spec, out, 2) == 137
    replace._recover(out)
    assert check_integrity(out).seed == 1 and _temporaries(out) == [".tiny.lock"]


def test_only_stale_temporaries_of_this_output_are_removed(tmp_path):
    out = tmp_path / "tiny"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout.strip()
        live = tmp_path / f".tiny.partial-{sleeper.pid}-abc"
        stale = tmp_path / f".tiny.partial-{dead}-abc"
        other = tmp_path / f".other.partial-{dead}-abc"
        victim = tmp_path / "victim"
        for d in (live, stale, other, victim):
            d.mkdir()
        (victim / "keep").write_text("precious")
        (tmp_path / f".tiny.old-{dead}-link").symlink_to(victim)
        txdsl.build(tiny_spec(), output=out, progress=False)
        names = _temporaries(out)
        assert live.name in names and stale.name not in names
        assert other.exists() and (victim / "keep").read_text() == "precious"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_two_concurrent_builds_of_one_output_both_succeed(tmp_path):
    spec, out = write_spec(tmp_path), tmp_path / "tiny"
    txdsl.build(spec, output=out, seed=0, progress=False)  # both replace an existing one
    procs = [subprocess.Popen([sys.executable, "-m", "txdsl", "build", str(spec), "-o",
                               str(out), "--seed", str(seed), "--no-run"], cwd=ROOT,
                              env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for seed in (1, 2)]
    results = [(p.wait(timeout=180), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert [code for code, _ in results] == [0, 0], results
    assert check_integrity(out).seed in (1, 2)
    assert _temporaries(out) == []
