"""Attention kinds without a KV cache (``Attention.no_kv_cache``): a cache is refused when
it is made, with the reason, and ``generate`` decodes them by re-running the sequence.

Before: a causal ``luna`` decoder accepted a cache and generated wrong tokens silently,
``compressed`` crashed inside its convolution, Transformer-XL attention ignored the cache.
(``luna`` and ``compressed`` now decode with states of their own: tests/plugins/lowrank/
test_luna_decoding.py, test_compressed_decoding.py.)
"""

from __future__ import annotations

import pytest
import torch

import txdsl
from copy_task import copy_spec

KINDS = {
    "probsparse": "probsparse(heads: heads, factor: 2)",
    "lsh": "lsh(heads: heads, buckets: 2, chunk: 4)",
    "relative_xl": "relative_xl(heads: heads)",
}


@pytest.fixture(scope="module", params=sorted(KINDS))
def model(request):
    torch.manual_seed(0)
    built = txdsl.build(copy_spec(KINDS[request.param], name=request.param), seed=0,
                        progress=False)
    with torch.no_grad():  # scaled weights: near-tied logits would hide a wrong token
        for p in built.module.parameters():
            p.mul_(3.0)
    return request.param, built.module.eval()


def test_a_cache_is_refused_with_the_reason(model):
    kind, m = model
    with pytest.raises(ValueError, match="can't decode with a KV cache: .+; generate"):
        m.new_cache(1, 16)


@torch.no_grad()
def test_generate_is_greedy_decoding_by_full_forwards(model):
    kind, m = model
    ids = torch.randint(2, 16, (2, 5), generator=torch.Generator().manual_seed(1))
    want = ids
    for _ in range(6):  # the definition: argmax of the last position, whole sequence each time
        nxt = m(input_ids=want).logits[:, -1].argmax(-1, keepdim=True)
        want = torch.cat([want, nxt], dim=1)
    assert torch.equal(m.generate(ids, 6), want), kind
