"""The build cache (txdsl/back/build_cache.py): hit on an unchanged build, miss when anything
that changes the result changes, corrupt entries rebuilt, never loaded.

Most tests use ``stamp``, a small self-contained backend plugin registered here (it
writes one file and counts how often it lowered), so a miss costs no export; one test
runs the real ``onnx`` backend through the ``txdsl build`` executable.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

import txdsl
from txdsl.back.build_cache import (ENTRY, BuildCache, cache_key, cache_root, current_versions,
                                    open_cache, verify)
from txdsl.backends import BackendOptions, Outputs
from txdsl.hookspecs import hookimpl

TINY = """model tiny {
  vocab = 97; d_model = 32; heads = 4; layers = 1; context = 32
  embedding { tokens = vocab; position = learned(max_len: context) }
  decoder(layers) { attention = full(heads: heads); ffn = mlp(hidden: 64) }
  head = lm(tied: true)
}
"""
VERSIONS = {"txdsl": "0.1.0", "torch": "2.13.0", "plugins": {"attention": "0.1.0"}}


class StampOptions(BackendOptions):
    flavour: str = "plain"


class Stamped:
    def __init__(self, module, path: Path):
        self.module, self.path = module, path

    def __call__(self, **inputs):
        return Outputs(logits=self.module(**inputs).logits)


class StampBackend:
    """Self-contained for the cache's purposes: its one file is what a hit reuses."""

    name = "stamp"
    description = "test backend: one stamp file per lowering"
    options_model = StampOptions
    self_contained = True
    lowered = 0

    def available(self, target=None):
        return None

    def lower(self, module, example_inputs, options):
        StampBackend.lowered += 1
        path = Path(tempfile.mkdtemp(prefix="stamp-")) / "stamp.json"
        path.write_text(json.dumps({"inputs": sorted(example_inputs),
                                    "flavour": options.flavour, "n": StampBackend.lowered}))
        return Stamped(module, path)

    def save(self, lowered, directory):
        shutil.copyfile(lowered.path, Path(directory) / "stamp.json")

    def load(self, directory, module, options):
        return Stamped(module, Path(directory) / "stamp.json")


class StampPlugin:
    @staticmethod
    @hookimpl
    def register_backends(register):
        register(StampBackend())


def _builtin_components() -> dict[str, str]:
    """tests/conftest.py's list, loaded by path: under xdist the name `conftest` may be
    another directory's conftest module."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("_tests_root_conftest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.BUILTIN_COMPONENTS


@pytest.fixture(scope="module")
def stamp_registry():
    from txdsl.plugins import load_registry

    modules = {n: importlib.import_module(m) for n, m in _builtin_components().items()}
    return load_registry({**modules, "backends": importlib.import_module("txdsl_backends"),
                          "stamp": StampPlugin})


def _build(registry, cache, text=TINY, **kw):
    kw.setdefault("backend", "stamp")
    return txdsl.build(text, registry=registry, progress=False, cache=cache, **kw)


def test_an_unchanged_build_is_a_hit(stamp_registry, tmp_path):
    cache = BuildCache(tmp_path, versions=VERSIONS)
    before = StampBackend.lowered
    first = _build(stamp_registry, cache)
    second = _build(stamp_registry, cache)
    assert StampBackend.lowered == before + 1
    assert not first.cached and second.cached and first.cache_key == second.cache_key
    entry = cache.path(first.cache_key)
    assert second.lowered.path == entry / "stamp.json"
    assert json.loads((entry / "stamp.json").read_text())["inputs"] == ["attention_mask",
                                                                         "input_ids"]
    x = first.example(batch=2)
    torch.testing.assert_close(second(**x)["logits"], first(**x)["logits"], rtol=0, atol=0)
    # cache=False rebuilds (and leaves the entry as it was)
    assert not _build(stamp_registry, False).cached and StampBackend.lowered == before + 2


@pytest.mark.parametrize("change", [
    dict(text=TINY.replace("hidden: 64", "hidden: 96")),  # the spec
    dict(options={"flavour": "spicy"}),  # the backend's options
    dict(seed=1),
    dict(dtype="bfloat16"),
    dict(force_kernels={"attention": "reference"}),
    dict(versions={**VERSIONS, "torch": "2.14.0"}),  # a version
    dict(versions={**VERSIONS, "plugins": {"attention": "0.2.0"}}),  # a plugin's version
])
def test_anything_that_changes_the_result_is_a_miss(stamp_registry, tmp_path, change):
    change = dict(change)
    base = _build(stamp_registry, BuildCache(tmp_path, versions=VERSIONS))
    cache = BuildCache(tmp_path, versions=change.pop("versions", VERSIONS))
    other = _build(stamp_registry, cache, **change)
    assert not other.cached and other.cache_key != base.cache_key
    assert _build(stamp_registry, cache, **change).cached  # and then a hit of its own


def test_the_weights_file_is_in_the_key(stamp_registry, tmp_path):
    from safetensors.torch import save_file

    cache = BuildCache(tmp_path / "c", versions=VERSIONS)
    built = _build(stamp_registry, cache)
    state = {k: v.clone().contiguous() for k, v in built.module.state_dict().items()
             if k != "heads.lm.weight"}  # the tied head is stored once
    save_file(state, str(tmp_path / "w.safetensors"))
    with_file = _build(stamp_registry, cache, weights=tmp_path / "w.safetensors")
    assert not with_file.cached
    state["embedding.tokens.weight"] += 1
    save_file(state, str(tmp_path / "w.safetensors"))
    changed = _build(stamp_registry, cache, weights=tmp_path / "w.safetensors")
    assert not changed.cached and changed.cache_key != with_file.cache_key


def test_the_key_takes_every_build_option_and_the_backend():
    parts = dict(ir_hash="a" * 64, plan={}, backend="aot", options={"dynamic": True},
                 dtype="float32", device="cpu", seed=0, weights_sha256=None, force_kernels={},
                 build_options={}, inputs={"input_ids": {"shape": [2, 16]}}, versions=VERSIONS)
    key, keyed = cache_key(**parts)
    assert keyed["versions"] == VERSIONS and len(key) == 64
    assert cache_key(**parts)[0] == key  # stable
    for field, value in [("backend", "onnx"), ("build_options", {"quantize": "int8-weight"}),
                         ("device", "cuda"), ("ir_hash", "b" * 64),
                         ("inputs", {"input_ids": {"shape": [2, 8]}})]:
        assert cache_key(**{**parts, field: value})[0] != key, field


def test_default_versions_name_txdsl_torch_and_every_plugin(stamp_registry):
    v = current_versions(stamp_registry)
    assert v["torch"] == torch.__version__ and v["txdsl"] == txdsl.__version__
    assert set(v["plugins"]) == set(stamp_registry.plugins) and "attention" in v["plugins"]
    assert len(v["sources"]["attention"]) == 64 and len(v["sources"]["txdsl"]) == 64


def test_where_the_cache_lives(monkeypatch, tmp_path):
    monkeypatch.setenv("TXDSL_CACHE_DIR", str(tmp_path / "a"))
    assert cache_root() == tmp_path / "a"
    monkeypatch.delenv("TXDSL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "txdsl"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "txdsl"
    assert open_cache(False) is None and open_cache(tmp_path).root == tmp_path
    with pytest.raises(TypeError, match="cache must be True, False, a directory"):
        open_cache(3)


@pytest.mark.parametrize("damage", ["file", "entry", "extra", "missing", "json"])
def test_a_corrupt_entry_is_detected_and_rebuilt(stamp_registry, tmp_path, damage, caplog):
    cache = BuildCache(tmp_path, versions=VERSIONS)
    key = _build(stamp_registry, cache).cache_key
    entry = cache.path(key)
    verify(entry, key)
    if damage == "file":
        (entry / "stamp.json").write_text('{"inputs": ["evil"]}')
    elif damage == "entry":
        raw = json.loads((entry / ENTRY).read_text())
        raw["inputs"] = {}
        (entry / ENTRY).write_text(json.dumps(raw))
    elif damage == "extra":
        (entry / "model.so").write_bytes(b"\x7fELF")
    elif damage == "missing":
        (entry / "stamp.json").unlink()
    else:
        (entry / ENTRY).write_text("{not json")
    before = StampBackend.lowered
    with caplog.at_level("WARNING", logger="txdsl.build"):
        again = _build(stamp_registry, cache)
    assert not again.cached and StampBackend.lowered == before + 1
    assert "build cache:" in caplog.text and "rebuilding" in caplog.text
    verify(entry, key)  # written anew, whole
    assert _build(stamp_registry, cache).cached


def test_entries_are_written_whole_and_hold_no_pickle(stamp_registry, tmp_path):
    cache = BuildCache(tmp_path, versions=VERSIONS)
    key = _build(stamp_registry, cache).cache_key
    shard = cache.path(key).parent
    assert [p.name for p in shard.iterdir()] == [key]  # no partial or lock files left
    assert sorted(p.name for p in cache.path(key).iterdir()) == [ENTRY, "stamp.json"]
    raw = json.loads((cache.path(key) / ENTRY).read_text())
    assert raw["key"] == key and raw["keyed"]["backend"] == "stamp"
    assert set(raw["files"]) == {"stamp.json"}


def test_eager_builds_are_not_cached(stamp_registry, tmp_path):
    built = _build(stamp_registry, BuildCache(tmp_path), backend="eager")
    assert built.cache_key is None and not built.cached and not (tmp_path / "builds").exists()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None
                    or importlib.util.find_spec("onnxscript") is None,
                    reason="needs the onnx extra")
def test_txdsl_build_says_cached_and_no_cache_rebuilds(tmp_path):
    spec = tmp_path / "tiny.tx"
    spec.write_text(TINY)
    exe = Path(sys.executable).with_name("txdsl")
    env = {**os.environ, "TXDSL_CACHE_DIR": str(tmp_path / "cache")}

    def build(*extra):
        proc = subprocess.run([str(exe), "build", str(spec), "--backend", "onnx", "-o",
                               str(tmp_path / "out"), *extra], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout.splitlines()

    first = build()
    assert first[0] == "built tiny for onnx (cpu, float32)"
    assert "ran on input_ids (2, 16) int64, attention_mask (2, 16) int64" in first
    assert build()[0] == "built tiny for onnx (cpu, float32) (cached)"
    assert build("--no-cache")[0] == "built tiny for onnx (cpu, float32)"
    assert txdsl.load(tmp_path / "out")(input_ids=torch.zeros(1, 3, dtype=torch.long)).logits \
        .shape == (1, 3, 97)


def test_the_cache_keeps_to_its_size_limit(stamp_registry, tmp_path):
    """Over the limit, the least recently used entries go (a hit is a use); the entry just
    stored stays, even alone over the limit."""
    import time

    probe = BuildCache(tmp_path / "probe", versions=VERSIONS, limit=None)
    _build(stamp_registry, probe, seed=0)
    size = probe.entries()[0][2]  # an entry's bytes (entry.json and the stamp)
    cache = BuildCache(tmp_path / "c", versions=VERSIONS, limit=int(2.5 * size))
    built = {}
    for seed in (0, 1):
        built[seed] = _build(stamp_registry, cache, seed=seed)
        time.sleep(0.02)
    assert _build(stamp_registry, cache, seed=0).cached  # seed 0 used again: seed 1 is older
    time.sleep(0.02)
    built[2] = _build(stamp_registry, cache, seed=2)  # three entries don't fit: seed 1 goes
    kept = {e for e, _, _ in cache.entries()}
    assert kept == {cache.path(built[0].cache_key), cache.path(built[2].cache_key)}
    assert _build(stamp_registry, cache, seed=0).cached
    assert not _build(stamp_registry, cache, seed=1).cached  # rebuilt, and stored again
    tiny = BuildCache(tmp_path / "c", versions=VERSIONS, limit=1)  # under one entry's size
    last = _build(stamp_registry, tiny, seed=3)
    assert [e for e, _, _ in tiny.entries()] == [tiny.path(last.cache_key)]


def test_the_size_limit_comes_from_the_environment(stamp_registry, monkeypatch, tmp_path):
    from txdsl.back.build_cache import max_bytes
    from txdsl.backends import BuildError

    for raw, want in [("", 10 * 10 ** 9), ("0", None), ("2.5", 25 * 10 ** 8), (" 1 ", 10 ** 9)]:
        monkeypatch.setenv("TXDSL_CACHE_MAX_GB", raw)
        assert max_bytes() == want, raw
    monkeypatch.setenv("TXDSL_CACHE_DIR", str(tmp_path))
    for bad in ("abc", "-1", "nan", "inf"):
        monkeypatch.setenv("TXDSL_CACHE_MAX_GB", bad)
        with pytest.raises(BuildError, match="TXDSL_CACHE_MAX_GB must be a number"):
            _build(stamp_registry, True)
