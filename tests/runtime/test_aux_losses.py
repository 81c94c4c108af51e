"""Auxiliary losses and component inputs: the StackState a model shares with its components."""

from __future__ import annotations

import torch
from torch import nn

from ir_helpers import decoder_only, encoder_decoder
from txdsl.back.construct import construct
from txdsl.sdk.attention import StackState


class CountingFFN(nn.Module):
    """An FFN that adds 1 to the auxiliary loss ``calls`` and ``x.mean()`` to ``signal``."""

    takes_state = True

    def forward(self, x, *, state: StackState):
        state.add_loss("calls", torch.ones((), dtype=x.dtype))
        state.add_loss("signal", x.mean())
        return torch.zeros_like(x)


def test_add_loss_sums_by_name():
    state = StackState()
    state.add_loss("a", torch.tensor(1.0))
    state.add_loss("a", torch.tensor(2.0))
    state.add_loss("b", torch.tensor(5.0))
    assert {k: float(v) for k, v in state.aux_losses.items()} == {"a": 3.0, "b": 5.0}


def test_model_sums_aux_losses_over_layers_and_stacks(registry):
    model = construct(encoder_decoder(), registry=registry)
    n_layers = 0
    for stack in (model.encoder, model.decoder):
        for layer in stack.layers:
            layer.ffn = CountingFFN()
            n_layers += 1
    ids = torch.randint(0, 40, (2, 5))
    out = model(input_ids=ids, decoder_input_ids=ids[:, :3])
    assert set(out.aux_losses) == {"calls", "signal"}
    assert float(out.aux_losses["calls"]) == n_layers  # every layer of both stacks, once
    torch.testing.assert_close(out.aux_loss, out.aux_losses["calls"] + out.aux_losses["signal"])
    out.aux_loss.backward()  # reachable from the output: gradients flow into the model
    assert model.embedding.tokens.weight.grad is not None


def test_aux_losses_survive_aot_eager_fullgraph(registry):
    model = construct(decoder_only(n_layers=2), registry=registry)
    for layer in model.decoder.layers:
        layer.ffn = CountingFFN()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    out = compiled(input_ids=torch.randint(0, 50, (1, 4)))
    assert float(out.aux_losses["calls"]) == 2


def test_no_aux_losses_is_none(registry):
    model = construct(decoder_only(), registry=registry).eval()
    out = model(input_ids=torch.randint(0, 50, (1, 4)))
    assert out.aux_loss is None and out.aux_losses == {}
