"""Spike-driven formulations of a convolution or linear layer: work only where the input is non-zero.

A spiking layer's input is mostly zeros (a spike carries theta, a pooled spike a multiple of
theta / k), so a layer could add up the weights of its active inputs instead of multiplying every
weight by every input. Each function here computes ``layer(x)`` from the non-zero entries of
``x`` only, with stock PyTorch CPU kernels (no code of our own in C), for a ``nn.Linear`` or an
``nn.Conv2d`` (any stride and padding; dilation 1, one group):

* :func:`linear_csr`: ``x`` as a CSR matrix times ``W^T`` (``torch.sparse.mm``);
* :func:`linear_bag`: every row of ``x`` is a bag of the rows of ``W^T`` at its active inputs,
  summed with their values as weights by ``embedding_bag`` (one pass over the active weights);
* :func:`conv_scatter`: every active input position adds its weight column ``W[:, c, kh, kw]``
  to each output position it reaches, one ``index_add_`` per kernel offset;
* :func:`conv_bag`: every output position is a bag of the (channel, kernel offset) rows of the
  weights of the active inputs in its receptive field; the bags are sorted by output position
  and summed by ``embedding_bag``.

The sums are those of the dense layer in another order: equal to it up to float rounding
(tests/test_sparse_layers.py checks them against float64 on binary and pooled spike inputs).
Converting ``x`` to its non-zero entries is part of each function, as it would be in an engine.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def check_conv(conv: nn.Conv2d) -> None:
    if conv.groups != 1 or tuple(conv.dilation) != (1, 1) or isinstance(conv.padding, str):
        raise ValueError(f"spike-driven convolutions take one group, dilation 1 and numeric padding, got {conv}")


def linear_csr(x: torch.Tensor, linear: nn.Linear, weight_t: torch.Tensor | None = None) -> torch.Tensor:
    """``linear(x)`` for ``x`` (n, in) as CSR rows times ``W^T``; ``weight_t``: ``W^T`` made contiguous once."""
    weight_t = linear.weight.t().contiguous() if weight_t is None else weight_t
    y = torch.sparse.mm(x.to_sparse_csr(), weight_t)
    return y if linear.bias is None else y + linear.bias


def linear_bag(x: torch.Tensor, linear: nn.Linear, weight_t: torch.Tensor | None = None) -> torch.Tensor:
    """``linear(x)`` as the value-weighted sum of the rows of ``W^T`` at each row's active inputs."""
    weight_t = linear.weight.t().contiguous() if weight_t is None else weight_t
    n = x.shape[0]
    rows, cols = x.nonzero(as_tuple=True)  # row-major: each row's entries are contiguous
    y = F.embedding_bag(cols, weight_t, _offsets(rows, n), mode="sum", per_sample_weights=x[rows, cols],
                        include_last_offset=True)
    return y if linear.bias is None else y + linear.bias


def _offsets(rows: torch.Tensor, bags: int) -> torch.Tensor:
    """Start of each bag in sorted ``rows`` (``bags + 1`` entries, the last = ``len(rows)``)."""
    offsets = torch.zeros(bags + 1, dtype=torch.long, device=rows.device)
    torch.cumsum(torch.bincount(rows, minlength=bags), 0, out=offsets[1:])
    return offsets


def _out_size(conv: nn.Conv2d, h: int, w: int) -> tuple[int, int]:
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    return (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1


def _reach(conv: nn.Conv2d, b, c, h, w, out_hw: tuple[int, int]):
    """For active inputs at (b, c, h, w): every (output row index, weight-table row) pair they
    contribute to, as flat tensors, with the index of the active input each pair came from.
    Output row = (b * OH + oh) * OW + ow; weight-table row = (i * kw + j) * C + c."""
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    oh_, ow_ = out_hw
    i = torch.arange(kh, device=b.device).repeat_interleave(kw)  # kernel offsets, row-major
    j = torch.arange(kw, device=b.device).repeat(kh)
    num_h, num_w = h.unsqueeze(1) + ph - i, w.unsqueeze(1) + pw - j  # = oh * stride where it reaches
    oh, ow = num_h.div(sh, rounding_mode="floor"), num_w.div(sw, rounding_mode="floor")
    ok = (num_h % sh == 0) & (num_w % sw == 0) & (oh >= 0) & (oh < oh_) & (ow >= 0) & (ow < ow_)
    out_rows = ((b.unsqueeze(1) * oh_ + oh) * ow_ + ow)[ok]
    table_rows = ((i * kw + j).unsqueeze(0) * conv.in_channels + c.unsqueeze(1))[ok]
    source = torch.arange(b.numel(), device=b.device).unsqueeze(1).expand_as(ok)[ok]
    return out_rows, table_rows, source


def weight_table(conv: nn.Conv2d) -> torch.Tensor:
    """The conv's weights as a table ``(kh * kw * C, O)``: row ``(i * kw + j) * C + c`` is ``W[:, c, i, j]``."""
    return conv.weight.permute(2, 3, 1, 0).reshape(-1, conv.out_channels).contiguous()


def _finish(y: torch.Tensor, conv: nn.Conv2d, n: int, out_hw: tuple[int, int]) -> torch.Tensor:
    """(n * OH * OW, O) rows -> the conv's (n, O, OH, OW) output (channels-last memory), plus bias."""
    y = y.view(n, *out_hw, conv.out_channels)
    if conv.bias is not None:
        y = y + conv.bias
    return y.permute(0, 3, 1, 2)


def _active(x: torch.Tensor):
    """Indices (b, c, h, w) and values of the non-zero entries of ``x`` (n, C, H, W)."""
    b, h, w, c = x.permute(0, 2, 3, 1).nonzero(as_tuple=True)  # position-major: as channels-last memory
    return b, c, h, w, x[b, c, h, w]


def _conv_pairs(x: torch.Tensor, conv: nn.Conv2d, table: torch.Tensor | None):
    """What both spike-driven convolutions start from: the weight table, batch size and output size,
    and every (active input, output it reaches) pair: its value, output row, weight row, source."""
    check_conv(conv)
    table = weight_table(conv) if table is None else table
    n, out_hw = x.shape[0], _out_size(conv, x.shape[2], x.shape[3])
    b, c, h, w, values = _active(x)
    out_rows, table_rows, source = _reach(conv, b, c, h, w, out_hw)
    return table, n, out_hw, values, out_rows, table_rows, source


def conv_scatter(x: torch.Tensor, conv: nn.Conv2d, table: torch.Tensor | None = None) -> torch.Tensor:
    """``conv(x)``: each active input adds its value times its weight column to every output it reaches."""
    table, n, out_hw, values, out_rows, table_rows, source = _conv_pairs(x, conv, table)
    y = torch.zeros(n * out_hw[0] * out_hw[1], conv.out_channels, dtype=x.dtype, device=x.device)
    y.index_add_(0, out_rows, table.index_select(0, table_rows) * values[source].unsqueeze(1))
    return _finish(y, conv, n, out_hw)


def conv_bag(x: torch.Tensor, conv: nn.Conv2d, table: torch.Tensor | None = None) -> torch.Tensor:
    """``conv(x)``: each output position sums the weight rows of the active inputs it sees (``embedding_bag``)."""
    table, n, out_hw, values, out_rows, table_rows, source = _conv_pairs(x, conv, table)
    out_rows, order = torch.sort(out_rows, stable=True)
    y = F.embedding_bag(table_rows[order], table, _offsets(out_rows, n * out_hw[0] * out_hw[1]), mode="sum",
                        per_sample_weights=values[source[order]], include_last_offset=True)
    return _finish(y, conv, n, out_hw)


# the formulations timed for each kind of layer: name -> f(x, layer, weights laid out once)
LINEAR_FORMULATIONS = {"sparse_csr": linear_csr, "sparse_bag": linear_bag}
CONV_FORMULATIONS = {"sparse_scatter": conv_scatter, "sparse_bag": conv_bag}


def sparse_formulations(layer: nn.Module) -> dict:
    """``name -> f(x)`` computing ``layer(x)`` spike-driven, with its weights laid out once."""
    if isinstance(layer, nn.Linear):
        weight_t = layer.weight.detach().t().contiguous()
        return {name: (lambda x, f=f: f(x, layer, weight_t)) for name, f in LINEAR_FORMULATIONS.items()}
    if isinstance(layer, nn.Conv2d):
        check_conv(layer)
        table = weight_table(layer).detach()
        return {name: (lambda x, f=f: f(x, layer, table)) for name, f in CONV_FORMULATIONS.items()}
    raise ValueError(f"no spike-driven formulation of {type(layer).__name__}")
