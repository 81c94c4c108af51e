"""A small decoder-only model learns a copy task on CPU: the whole stack trains.

Sequences are ``a_1 .. a_n SEP a_1 .. a_n``; the loss is on the copy. An
untrained model can do no better than chance (ln(vocab)); one whose
attention, positions, residuals and tied head work together learns to look
back ``n + 1`` positions and copies almost perfectly.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from ir_helpers import decoder_only
from txdsl.back.construct import construct

VOCAB, N, SEP = 16, 8, 1  # tokens 2..15 are content, 1 separates, 0 is unused


def batch(B: int, g: torch.Generator) -> torch.Tensor:
    content = torch.randint(2, VOCAB, (B, N), generator=g)
    sep = torch.full((B, 1), SEP)
    return torch.cat([content, sep, content], dim=1)  # (B, 2N + 1)


def copy_loss(model, seq: torch.Tensor) -> torch.Tensor:
    logits = model(seq[:, :-1]).logits  # predict token t+1 from tokens <= t
    target = seq[:, 1:]
    return F.cross_entropy(logits[:, N:].reshape(-1, VOCAB), target[:, N:].reshape(-1))


def test_learns_to_copy(registry):
    torch.manual_seed(0)
    ir = decoder_only(d_model=64, heads=4, n_layers=2, vocab=VOCAB, context=2 * N + 1)
    model = construct(ir, registry=registry).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(1)
    eval_seq = batch(256, torch.Generator().manual_seed(2))
    with torch.no_grad():
        initial = copy_loss(model.eval(), eval_seq).item()
    model.train()
    start = time.monotonic()
    for step in range(400):
        loss = copy_loss(model, batch(32, g))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if loss.item() < 0.02 or time.monotonic() - start > 25:
            break
    with torch.no_grad():
        final = copy_loss(model.eval(), eval_seq).item()
        predicted = model(eval_seq[:, :-1]).logits[:, N:].argmax(-1)
    accuracy = (predicted == eval_seq[:, N + 1:]).float().mean().item()
    chance = math.log(VOCAB - 2)
    assert initial > 0.8 * chance, initial
    assert final < 0.1 * chance and final < initial / 10, (initial, final, step)
    assert accuracy > 0.95, accuracy
