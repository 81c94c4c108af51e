"""``txdsl describe`` and ``txdsl plugins --args``: as a user runs them (subprocess) and
as functions (on the built-in plugins and a third-party-like one)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from txdsl.arguments import arguments, field_docs
from txdsl.cli import main
from txdsl.describe import DescribeError, describe_kind, find_kind
from txdsl.plugins import get_registry, load_registry

import describe_fixture  # tests/cli/, on the path as pytest runs this file

ROOT = Path(__file__).resolve().parents[2]
BUILTIN = "attention,norms,positions,ffn,heads,embeddings,backends"


def txdsl(*args: str) -> subprocess.CompletedProcess:
    env = {**__import__("os").environ, "TXDSL_PLUGINS": BUILTIN}
    return subprocess.run([sys.executable, "-m", "txdsl", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def run(monkeypatch, capsys):
    """``run(*argv)``: txdsl in this process (faster than a subprocess), on the built-in
    plugins; returns (exit status, stdout, stderr)."""
    monkeypatch.setenv("TXDSL_PLUGINS", BUILTIN)
    get_registry.cache_clear()

    def call(*argv: str) -> tuple[int, str, str]:
        status = main(list(argv))
        out, err = capsys.readouterr()
        return status, out, err

    yield call
    get_registry.cache_clear()


# ------------------------------------------------------------ the command


def test_describe_full_text():
    r = txdsl("describe", "full")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("attention full: Exact multi-head softmax attention "
                               "(Vaswani et al. 2017)")
    assert lines[1:3] == ["paper: Vaswani et al. 2017", "links: https://arxiv.org/abs/1706.03762"]
    assert "plugin: attention 0.1.0 (txdsl_attention)" in lines
    assert "usage: attention = full(heads: ...)" in lines
    assert any(line.split() == ["heads", "int", ">", "0", "(required)", "number", "of",
                                "attention", "(query)", "heads"] for line in lines)
    assert any(line.startswith("  dropout") and "float >= 0.0, < 1.0 = 0.0" in line
               and line.endswith("on attention weights") for line in lines)
    sdpa = next(line for line in lines if line.strip().startswith("sdpa"))
    assert "priority 10, plugin attention; any device, dtype, backend; runs here" in sdpa
    assert r.stdout.index("  sdpa ") < r.stdout.index("  reference ")  # best first


def test_describe_position_json():
    r = txdsl("describe", "rope", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert (info["family"], info["kind"], info["acts"]) == ("position", "rope", "qk")
    assert info["paper"] == "Su et al. 2021"
    assert info["urls"][0] == "https://arxiv.org/abs/2104.09864"  # then the scalings' papers
    assert info["written_in"] == "an encoder/decoder block" and "full" in info["accepted_by"]
    theta, fraction = info["arguments"][:2]
    assert theta == {"name": "theta", "type": "float", "required": False, "default": 10000.0,
                     "choices": None, "constraints": {"gt": 1.0},
                     "doc": "the base of the rotation frequencies, inv_freq_i = "
                            "theta^(-2i / rotary_dim); 10000 from Su et al. 2021 (RoFormer), "
                            "as Llama 1 and 2 (Llama 3: 500000)"}
    assert fraction["constraints"] == {"gt": 0.0, "le": 1.0}
    assert fraction["doc"] == "share of head_dim rotated"
    assert info["plugins"] == [{"name": "positions", "version": "0.1.0",
                                "module": "txdsl_positions"}]
    assert [i["impl"] for i in info["implementations"]] == ["reference"]


def test_describe_choices_and_layernorm(run):
    status, out, _ = run("describe", "mlp", "--json")
    act = next(a for a in json.loads(out)["arguments"] if a["name"] == "act")
    assert act["choices"] == ["relu", "gelu", "gelu_tanh", "silu"] and act["default"] == "gelu"
    status, out, _ = run("describe", "layernorm")
    assert status == 0 and out.startswith("norm layernorm: LayerNorm (Ba et al. 2016)")


def test_ambiguous_kind_asks_for_the_family(run):
    r = txdsl("describe", "relative_xl")
    assert r.returncode == 2 and r.stdout == ""
    assert "'relative_xl' is a kind of several families: attention, position" in r.stderr
    assert "txdsl describe attention/relative_xl" in r.stderr
    for how in (["position/relative_xl"], ["relative_xl", "--family", "position"]):
        status, out, err = run("describe", *how)
        assert status == 0, err
        assert out.startswith("position relative_xl: Transformer-XL")
        assert "reference  priority 0, plugin positions" in out  # built (no longer declared)


@pytest.mark.parametrize("kind, message, hint", [
    ("layrnorm", "unknown kind 'layrnorm'", "did you mean 'layernorm'? (a norm kind)"),
    ("synthesizer", "attention 'synthesizer' is not installed", "is in txdsl's catalogue"),
    ("inductor", "'inductor' is a backend, not a component kind", "txdsl plugins"),
    ("norm/rope", "unknown norm 'rope'", "'rope' is a position kind"),
])
def test_unknown_kind_exits_1_with_a_hint(run, kind, message, hint):
    status, out, err = run("describe", kind)
    assert status == 1 and out == ""
    assert err.splitlines()[0] == f"txdsl: error: {message}"
    assert hint in err


def test_unknown_kind_as_a_user_sees_it():
    r = txdsl("describe", "synthesiser")
    assert r.returncode == 1 and r.stdout == "" and "Traceback" not in r.stderr
    assert r.stderr == ("txdsl: error: unknown kind 'synthesiser'\nhint: did you mean "
                        "'synthesizer'? "
                        "(an attention kind in txdsl's catalogue, not installed yet)\n")


def test_plugins_args(run):
    r = txdsl("plugins", "--args")
    assert r.returncode == 0, r.stderr
    assert any(line.startswith("    rope(theta: float > 1.0 = 10000.0, fraction: float > 0.0, "
                               "<= 1.0 = 1.0, scaling: ") for line in r.stdout.splitlines())
    assert "    conv(size: int > 0, channels: int > 0 = 3, image: int > 0)" in r.stdout
    data = json.loads(run("plugins", "--args", "--json")[1])
    norms = next(p for p in data["plugins"] if p["name"] == "norms")
    eps = norms["arguments"]["norm"]["rmsnorm"][0]
    assert eps["name"] == "eps" and eps["default"] == 1e-6 and eps["constraints"] == {"gt": 0.0}
    assert "arguments" not in json.loads(run("plugins", "--json")[1])["plugins"][0]


# ------------------------------------------------------------ the functions


@pytest.fixture(scope="module")
def third_party(registry):
    import importlib

    modules = {n: importlib.import_module(i.module) for n, i in registry.plugins.items()}
    return load_registry({**modules, "windowed": describe_fixture})


def test_every_way_an_argument_documents_itself():
    docs = {a.name: a for a in arguments(describe_fixture.WindowArgs)}
    assert docs["window"].doc == "keys each query sees"  # Field(description=...)
    assert docs["window"].required and docs["window"].constraints == {"gt": 0}
    assert docs["stride"].doc == "step between windows"  # trailing comment
    assert docs["stride"].constraints == {"ge": 1, "le": 64} and docs["stride"].default == 1
    assert docs["layout"].doc == "how windows are laid out, over two comment lines"  # above
    assert docs["layout"].choices == ["band", "block"]
    assert docs["mode"].doc == "Which kernel family to prefer."  # attribute docstring
    assert (docs["mode"].type, docs["mode"].choices, docs["mode"].default) == \
        ("symbol", ["fast", "exact"], "exact")
    assert docs["note"].type == "string or none" and docs["note"].doc == ""
    assert docs["heads"].doc == "number of attention (query) heads"  # a common name
    assert docs["note"].signature_text() == "note: string or none = none"
    assert field_docs(describe_fixture.PlainNormArgs) == {}  # no source docs: none invented


def test_describe_a_third_party_kind(third_party):
    assert find_kind(third_party, "window") == ("attention", "window")
    info = describe_kind(third_party, "attention", "window")
    assert info["paper"] == "Beltagy et al. 2020"
    assert info["urls"] == ["https://arxiv.org/abs/2004.05150"]
    assert "Each query sees the ``window`` keys before it." in info["doc"]
    assert info["plugins"] == [{"name": "windowed", "version": None,
                                "module": describe_fixture.__name__}]
    triton, reference = info["implementations"]
    assert (triton["impl"], triton["priority"], triton["runs_here"]) == ("triton", 20, False)
    assert triton["targets"]["devices"] == ["cuda"] and triton["targets"]["requires"] == [
        "no_such_module_x"]
    assert triton["targets_text"] == ("any dtype, backend; devices cuda; requires "
                                      "no_such_module_x")
    assert triton["reasons"] == ["device cpu not in ['cuda']",
                                 "needs the 'no_such_module_x' package"]
    assert reference["runs_here"] and not info["declared"]
    assert info["accepts"] == ["bias", "qk"] and "rope" in info["positions"]
    plain = describe_kind(third_party, "norm", "plainnorm")
    assert plain["declared"] and plain["implementations"] == []
    assert plain["summary"] == "" and plain["paper"] is None and plain["catalogue"] is None


def test_find_kind_errors(registry):
    with pytest.raises(DescribeError) as info:
        find_kind(registry, "relative_xl")
    assert info.value.ambiguous
    assert find_kind(registry, "relative_xl", "attention") == ("attention", "relative_xl")
    assert find_kind(registry, "positions/rope") == ("position", "rope")
    with pytest.raises(DescribeError, match="unknown family 'atention'") as info:
        find_kind(registry, "atention/full")
    assert "did you mean 'attention'" in info.value.hint
    with pytest.raises(DescribeError, match="contradicts --family norm"):
        find_kind(registry, "position/rope", "norm")
    with pytest.raises(DescribeError, match="unknown kind 'zzz'") as info:
        find_kind(registry, "zzz")
    assert not info.value.ambiguous and "Writing a plugin" in info.value.hint


def test_every_builtin_argument_has_a_doc_line(registry):
    for family in ("norm", "ffn", "head", "patches"):  # documented with Field(description=...)
        for kind in registry.kinds(family):
            undocumented = [a.name for a in arguments(registry.args(family, kind)) if not a.doc]
            assert not undocumented, f"{family} '{kind}': {undocumented}"
