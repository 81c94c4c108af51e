"""Print the README's model-zoo table: for each family, what its parity test compares it with
and the largest difference measured now (float32, tiny odd configs, padding where the test
has it), by running the same comparisons as the parity tests.

    .venv/bin/python tests/parity/zoo_table.py     # ~1 minute on one core

Families whose parity tests live elsewhere (or that have only a parameter-count check) are
listed with what checks them and no number. The table is pasted into README.md
after running this; no test checks that it is current (the parity tests themselves assert
every difference is within 1e-4).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parent / "interop")]

from conftest import load_test_registry  # noqa: E402
from txdsl.back.construct import construct  # noqa: E402
from txdsl.interop import load_hf_weights  # noqa: E402

import test_hf_bert as bert  # noqa: E402
import test_hf_deberta as deberta  # noqa: E402
import test_hf_gpt2 as gpt2  # noqa: E402
import test_hf_roberta as roberta  # noqa: E402
import test_hf_t5 as t5  # noqa: E402
import test_hf_xlnet as xlnet  # noqa: E402
import test_torch_transformer as vaswani  # noqa: E402
import test_transformer_xl as txl  # noqa: E402
from parity_helpers import parse_spec  # noqa: E402

REGISTRY = load_test_registry()


def diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@torch.no_grad()
def bert_diff() -> float:
    hf = bert.hf_bert()
    ours = construct(bert.bert_ir(), registry=REGISTRY)
    load_hf_weights(ours, hf)
    x, types, mask = bert.batch()
    real = mask.bool()
    return diff(ours.eval()(x, attention_mask=mask, token_type_ids=types).logits[real],
                hf(x, attention_mask=mask, token_type_ids=types).logits[real])


@torch.no_grad()
def gpt2_diff() -> float:
    hf = gpt2.hf_gpt2()
    ours = construct(gpt2.gpt2_ir(), registry=REGISTRY)
    load_hf_weights(ours, hf)
    x = gpt2.ids()
    return diff(ours.eval()(x).logits, hf(x).logits)


@torch.no_grad()
def t5_diff() -> float:
    worst = 0.0
    for cfg in t5.CONFIGS.values():
        hf = t5.hf_t5(*cfg)
        ours = construct(parse_spec("t5.tx", t5.tiny(*cfg)), registry=REGISTRY).eval()
        ours.load_state_dict(t5.t5_state_dict(hf), strict=True)
        src, sm, tgt, tm = t5.batch(cfg[0])
        a = ours(src, attention_mask=sm, decoder_input_ids=tgt, decoder_attention_mask=tm)
        b = hf(input_ids=src, attention_mask=sm, decoder_input_ids=tgt, decoder_attention_mask=tm)
        worst = max(worst, diff(a.logits[tm.bool()], b.logits[tm.bool()]))
    return worst


@torch.no_grad()
def roberta_diff() -> float:
    worst = 0.0
    for cfg in roberta.CONFIGS.values():
        hf = roberta.hf_roberta(*cfg)
        ours = construct(parse_spec("roberta.tx", roberta.tiny(*cfg)), registry=REGISTRY).eval()
        ours.load_state_dict(roberta.roberta_state_dict(hf), strict=True)
        x, mask = roberta.batch(cfg[0])
        for given in (mask, None):
            a, b = ours(x, attention_mask=given), hf(x, attention_mask=given)
            worst = max(worst, diff(a.last_hidden_state[mask.bool()],
                                    b.last_hidden_state[mask.bool()]))
    return worst


@torch.no_grad()
def deberta_diff() -> float:
    worst = 0.0
    for cfg in deberta.CONFIGS.values():
        hf = deberta.hf_deberta(*cfg)
        ours = construct(parse_spec("deberta.tx", deberta.tiny(*cfg)), registry=REGISTRY).eval()
        load_hf_weights(ours, hf)
        x, mask = deberta.batch(cfg[0])
        real = mask.bool()
        worst = max(worst, diff(ours(x, attention_mask=mask).logits[real],
                                hf(x, attention_mask=mask).logits[real]))
    return worst


@torch.no_grad()
def xlnet_diff() -> float:
    worst = 0.0
    for cfg in xlnet.CONFIGS.values():
        hf = xlnet.hf_xlnet(*cfg)
        ours = construct(parse_spec("xlnet.tx", xlnet.tiny(*cfg)), registry=REGISTRY).eval()
        load_hf_weights(ours, hf)
        x, mask, types, perm, mapping = xlnet.batch(cfg[0])
        real = mask.bool()
        worst = max(worst, diff(ours(x, attention_mask=mask, token_type_ids=types).logits[real],
                                hf(x, attention_mask=mask, token_type_ids=types).logits[real]))
        kw = dict(token_type_ids=types, perm_mask=perm, target_mapping=mapping)
        worst = max(worst, diff(ours(x, **kw).logits, hf(x, **kw).logits))
        a1, b1 = ours(x[:, :7]), hf(x[:, :7], use_mems=True)
        worst = max(worst, diff(ours(x[:, 7:], mems=a1.mems).logits,
                                hf(x[:, 7:], mems=b1.mems, use_mems=True).logits))
    return worst


@torch.no_grad()
def txl_diff() -> float:
    model = construct(parse_spec("transformer_xl.tx", txl.TINY), registry=REGISTRY)
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        p.copy_(1.0 + 0.1 * torch.randn_like(p) if "norm" in name and name.endswith("weight")
                else 0.2 * torch.randn_like(p))
    model.eval()
    x = txl.tokens()
    want = txl.reference(model, [s[0] for s in txl.split(x)])
    mems, worst = None, 0.0
    for (logits, mems_want), seg in zip(want, txl.split(x)):
        out = model(seg, mems=mems)
        mems = out.mems
        worst = max([worst, diff(out.logits[0], logits)]
                    + [diff(m[0], w) for m, w in zip(mems, mems_want)])
    return worst


@torch.no_grad()
def transformer_diff() -> float:
    t = vaswani.torch_transformer().eval()
    ours = construct(vaswani.transformer_ir(), registry=REGISTRY)
    ours.load_state_dict(vaswani.stacks_state_dict(t), strict=False)
    ours.eval()
    src, tgt, src_mask, tgt_mask = vaswani.inputs()
    out = ours(src, attention_mask=src_mask, decoder_input_ids=tgt,
               decoder_attention_mask=tgt_mask)
    emb = ours.embedding
    ref = t(emb(src), emb(tgt), tgt_mask=vaswani.causal_mask(tgt.shape[1]),
            src_key_padding_mask=src_mask == 0, tgt_key_padding_mask=tgt_mask == 0,
            memory_key_padding_mask=src_mask == 0, tgt_is_causal=True)
    logits = torch.nn.functional.linear(ref, emb.tokens.weight)
    real = tgt_mask.bool()
    return diff(out.logits[real], logits[real])


def interop_diff(*kinds: str):
    """The worst difference of ``txdsl.from_hf`` models against HF over the interop tests'
    configs of ``kinds`` (tests/interop/hf_models.py; padding as tests/interop/test_from_hf.py)."""
    import hf_models
    import test_from_hf

    import txdsl

    def measure() -> float:
        worst = 0.0
        for kind in kinds:
            for i in range(len(hf_models.CONFIGS[kind])):
                hf, inputs = hf_models.make(kind, i)
                _, ours = txdsl.from_hf(hf)
                worst = max(worst, test_from_hf.compare(dict(hf=hf, inputs=inputs), ours.eval()))
        return worst

    return measure


ROWS = [  # spec, models, checked against, how, measured
    ("transformer.tx", "Vaswani et al. 2017, base", "`torch.nn.Transformer` (stacks and logits)",
     "tests/parity/test_torch_transformer.py", transformer_diff),
    ("bert.tx", "`bert`, `bert_mlm`, `bert_classifier`", "`BertForMaskedLM` (MLM logits, padding, token types)",
     "tests/parity/test_hf_bert.py", bert_diff),
    ("gpt2.tx", "GPT-2 small", "`GPT2LMHeadModel` (logits)", "tests/parity/test_hf_gpt2.py",
     gpt2_diff),
    ("transformer_xl.tx", "enwik8, 12 layers", "the paper's equations written naively "
     "(3 segments: logits and mems)", "tests/parity/test_transformer_xl.py", txl_diff),
    ("xlnet.tx", "XLNet-base", "`XLNetLMHeadModel` (padding + segments; perm_mask + "
     "target_mapping; mems)", "tests/parity/test_hf_xlnet.py", xlnet_diff),
    ("roberta.tx", "RoBERTa-base (three heads)", "`RobertaModel` (hidden states, with and without a mask)",
     "tests/parity/test_hf_roberta.py", roberta_diff),
    ("albert.tx", "`albert`, `albert_mlm`", "`AlbertForMaskedLM`, `AlbertModel` (via `from_hf`, "
     "padding)", "tests/interop/test_from_hf.py", interop_diff("albert")),
    ("t5.tx", "`t5_small`, `t5_v1_1_small`", "`T5ForConditionalGeneration` v1.0 (logits, loss); v1.1 via "
     "`from_hf`", "tests/parity/test_hf_t5.py, tests/interop/test_from_hf.py",
     lambda: max(t5_diff(), interop_diff("t5_v1_1")())),
    ("electra.tx", "generator, discriminator", "`ElectraForPreTraining`, `ElectraForMaskedLM` "
     "(via `from_hf`, padding)", "tests/interop/test_from_hf.py", interop_diff("electra")),
    ("deberta.tx", "`deberta_v3_small`, `_mlm`", "`DebertaV2ForMaskedLM` v2 and v3 (MLM logits)",
     "tests/parity/test_hf_deberta.py", deberta_diff),
    ("vit.tx", "`vit` (ViT-B/16), `vit_classifier`", "`ViTForImageClassification` (via "
     "`from_hf`)", "tests/interop/test_from_hf.py", interop_diff("vit")),
    ("llama.tx", "LLaMA-style (TinyLlama-1.1B sizes)", "`LlamaForCausalLM` (via `from_hf`, left "
     "padding; greedy generation token for token)", "tests/interop/test_from_hf.py",
     interop_diff("llama")),
]


def parameters(spec: str) -> str:
    """Each model's parameter count in ``specs/<spec>``, as ``txdsl show`` gives it."""
    import txdsl
    from txdsl.front.estimate import estimate

    irs = txdsl.parse_all(HERE.parents[1] / "specs" / spec)
    return "<br>".join(f"`{ir.name}` {estimate(ir, REGISTRY).params:,}" for ir in irs)


def main() -> None:
    torch.set_num_threads(1)
    print("| spec | models | parameters | checked against | test | max abs difference |")
    print("|---|---|---|---|---|---|")
    for spec, models, against, test, measure in ROWS:
        measured = f"{measure():.1e}" if measure is not None else "—"
        print(f"| `{spec}` | {models} | {parameters(spec)} | {against} | `{test}` | {measured} |")


if __name__ == "__main__":
    main()
