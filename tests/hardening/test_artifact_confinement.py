"""Class 4: an artifact never reaches outside itself, and every edit of it is detected.

Every path the manifest names stays inside the directory; no symlink is
followed; no unlisted file is accepted; the manifest's own hash covers every
field (so an edited ``dtype`` or ``seed`` is refused), and a property test
edits random manifest fields and flips random bytes: ``txdsl.load`` refuses
each with an :class:`ArtifactError`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import txdsl
from hardening_helpers import tiny_spec
from txdsl.back.artifact import (MANIFEST, ArtifactError, check_integrity, manifest_bytes,
                                 manifest_hash, sha256_file)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("art") / "tiny"
    txdsl.build(tiny_spec(), output=out, seed=3, progress=False)
    return out


@pytest.fixture
def copy(artifact, tmp_path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(artifact, dst)
    return dst


def _raw(directory: Path) -> dict:
    return json.loads((directory / MANIFEST).read_text())


def _reseal(directory: Path, raw: dict) -> None:
    """Write ``raw`` with a correct manifest hash, as anyone can: the hash is no signature."""
    raw = {**raw, "manifest_sha256": manifest_hash(raw)}
    (directory / MANIFEST).write_bytes(manifest_bytes(raw))


def test_an_untouched_artifact_passes(artifact):
    m = check_integrity(artifact)
    assert m.format_version == 2 and len(m.manifest_sha256) == 64
    assert m.manifest_sha256 == manifest_hash(_raw(artifact))


@pytest.mark.parametrize("field,value", [("dtype", "float16"), ("seed", 4),
                                         ("backend_options", {"mode": "x"}),
                                         ("created", "2020-01-01T00:00:00+00:00")])
def test_an_edited_field_is_detected(copy, field, value):
    raw = _raw(copy)
    raw[field] = value
    (copy / MANIFEST).write_bytes(manifest_bytes(raw))
    with pytest.raises(ArtifactError, match="manifest hash mismatch"):
        txdsl.load(copy)


def test_a_reformatted_manifest_is_detected(copy):
    raw = _raw(copy)
    (copy / MANIFEST).write_text(json.dumps(raw, indent=4))
    with pytest.raises(ArtifactError, match="not in the form txdsl writes"):
        txdsl.load(copy)


@pytest.mark.parametrize("rel", ["../../outside.txt", "/etc/hostname", "a/../../outside.txt",
                                 "./spec.tx", "", "a//b", "..\\outside.txt"])
def test_files_entries_must_stay_inside(copy, rel):
    outside = copy.parent / "outside.txt"
    outside.write_text("not part of the artifact")
    raw = _raw(copy)
    raw["files"][rel] = sha256_file(outside)
    _reseal(copy, raw)
    with pytest.raises(ArtifactError, match="not a plain path inside the artifact"):
        txdsl.load(copy)


@pytest.mark.parametrize("section,rel", [("weights", "/tmp/w.safetensors"),
                                         ("weights", "../copy/weights.safetensors"),
                                         ("spec", "../spec.tx"), ("spec", "/etc/passwd")])
def test_weights_and_spec_paths_must_stay_inside(copy, section, rel):
    raw = _raw(copy)
    raw[section]["file"] = rel
    _reseal(copy, raw)
    with pytest.raises(ArtifactError, match=rf"{section}.file .* is not a plain path"):
        txdsl.load(copy)


def test_a_symlinked_file_is_refused_even_with_the_right_content(copy, tmp_path):
    outside = tmp_path / "spec_outside.tx"
    shutil.copyfile(copy / "spec.tx", outside)
    (copy / "spec.tx").unlink()
    (copy / "spec.tx").symlink_to(outside)
    with pytest.raises(ArtifactError, match="spec.tx: a symbolic link inside the artifact"):
        txdsl.load(copy)


def test_a_symlinked_directory_is_refused(copy, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (copy / "sub").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(ArtifactError, match="sub: a symbolic link"):
        txdsl.load(copy)


def test_a_symlinked_manifest_is_refused(copy, tmp_path):
    shutil.move(copy / MANIFEST, tmp_path / MANIFEST)
    (copy / MANIFEST).symlink_to(tmp_path / MANIFEST)
    with pytest.raises(ArtifactError, match="manifest.json: not a regular file"):
        txdsl.load(copy)


def test_an_unlisted_file_is_refused(copy):
    (copy / "extra.bin").write_bytes(b"\0" * 8)
    with pytest.raises(ArtifactError, match="extra.bin: not listed in manifest.json"):
        txdsl.load(copy)


def test_a_fifo_is_refused_without_blocking(copy):
    os.mkfifo(copy / "pipe")
    with pytest.raises(ArtifactError, match="pipe: not a regular file"):
        txdsl.load(copy)


def test_an_old_format_is_refused_clearly(copy):
    raw = _raw(copy)
    raw["format_version"] = 1
    del raw["manifest_sha256"]
    (copy / MANIFEST).write_text(json.dumps(raw, indent=2))
    with pytest.raises(ArtifactError, match="format version 1 was written by an older txdsl.*"
                                            "rebuild it"):
        txdsl.load(copy)


# ---------------------------------------------------------------- property: every edit is seen


def _leaves(value, path=()):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            yield from _leaves(v, path + (i,))
    else:
        yield path


JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
                        st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3),
                                                                              st.integers(),
                                                                              max_size=2))


def _set(raw, path, value):
    target = raw
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def _get(raw, path):
    for key in path:
        raw = raw[key]
    return raw


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_every_random_edit_is_detected(artifact, data):
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "a"
        shutil.copytree(artifact, copy)
        raw = _raw(copy)
        edit = data.draw(st.sampled_from(["field", "delete", "add", "flip"]), label="edit")
        if edit == "flip":
            rel = data.draw(st.sampled_from(sorted([MANIFEST, *raw["files"]])), label="file")
            blob = bytearray((copy / rel).read_bytes())
            at = data.draw(st.integers(0, len(blob) - 1), label="byte")
            blob[at] ^= data.draw(st.integers(1, 255), label="mask")
            (copy / rel).write_bytes(bytes(blob))
        else:
            leaves = [p for p in _leaves(raw) if p]
            path = data.draw(st.sampled_from(leaves), label="field")
            if edit == "field":
                value = data.draw(JSON_VALUES, label="value")
                if json.dumps(value) == json.dumps(_get(raw, path)):
                    return  # not an edit
                _set(raw, path, value)
            elif edit == "delete":
                parent = _get(raw, path[:-1])
                if isinstance(parent, list):
                    parent.pop(path[-1])
                else:
                    del parent[path[-1]]
            else:
                parent = _get(raw, path[:-1])
                if not isinstance(parent, dict):
                    return
                parent[data.draw(st.text(min_size=1, max_size=8).filter(
                    lambda k: k not in parent), label="key")] = 1
            (copy / MANIFEST).write_bytes(manifest_bytes(raw))
        with pytest.raises(ArtifactError):
            txdsl.load(copy, backend="eager")
