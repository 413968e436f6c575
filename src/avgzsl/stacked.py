"""One training step of k models of one class as one stacked, vmapped call (pack.py's rounds).

    params_i, buffers_i, batch_i  ->  stacked on a new leading axis k
    loss_i = vmap(functional_call(template, (params, buffers), batch))        (k,)
    sum_i loss_i .backward()   ->  grad_i = d loss_i / d params_i   (the members are independent)
    each member's own optimiser steps on its gradient; its BatchNorm statistics are copied back

The template is a copy of the first member's model whose nn.Dropout and nn.MultiheadAttention modules
draw their masks per member (`_Masks`), from the member's own generators (`MemberRNG`), in the solo call
order and memory layout, so a member draws exactly the numbers its solo run draws (CPU; on CUDA the
solo run's fused dropout kernel draws differently, so there a member has its own stream, not the solo
one). `solo_round_step` is the fallback: the solo code with the member's generators swapped in.
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .models.base import Batch
from .train import solo_step

_BATCH_FIELDS = ("audio", "video", "audio_mask", "video_mask", "audio_times", "video_times")


class MemberRNG:
    """The torch generators one solo run would use: the CPU one (model init, CPU dropout) and, on
    CUDA, the device's (dropout on device tensors). `capture` copies the global state in right after
    the member's model is built; `swapped` lends it to the global generators for code that draws
    from them (a solo-code step)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cpu = torch.Generator()
        self.dev = torch.Generator(device=device) if device.type == "cuda" else self.cpu

    def capture(self) -> None:
        self.cpu.set_state(torch.get_rng_state())
        if self.dev is not self.cpu:
            self.dev.set_state(torch.cuda.get_rng_state(self.device))

    def state(self) -> dict:
        """The protocol's `state.pt` format (protocol._rng_state)."""
        out = {"torch": self.cpu.get_state()}
        if self.dev is not self.cpu:
            out["cuda"] = self.dev.get_state()
        return out

    def set_state(self, state: dict) -> None:
        self.cpu.set_state(state["torch"])
        if self.dev is not self.cpu and "cuda" in state:
            self.dev.set_state(state["cuda"])

    def swapped(self):
        return _Swapped(self)


class _Swapped:
    def __init__(self, rng: MemberRNG):
        self.rng = rng

    def __enter__(self):
        self.saved = torch.get_rng_state(), (torch.cuda.get_rng_state(self.rng.device)
                                             if self.rng.dev is not self.rng.cpu else None)
        torch.set_rng_state(self.rng.cpu.get_state())
        if self.saved[1] is not None:
            torch.cuda.set_rng_state(self.rng.dev.get_state(), self.rng.device)

    def __exit__(self, *exc):
        self.rng.capture()
        torch.set_rng_state(self.saved[0])
        if self.saved[1] is not None:
            torch.cuda.set_rng_state(self.saved[1], self.rng.device)


class _Masks:
    """Where the template's dropout modules get their masks during one vmapped call: one mask per
    member from that member's generator, in call order, as F.dropout draws it in a solo run
    (empty_like(x).bernoulli_(1 - p), divided by 1 - p). empty_like keeps x's memory layout and
    bernoulli_ fills memory in order, so the k-th nn.Dropout call draws in the layout its input had in
    the solo model (`orders`, recorded once per group by `_dropout_orders`; e.g. the output of
    nn.MultiheadAttention is laid out (L, B, d))."""

    gens: list | None = None  # None: probe (masks of ones, no draw)
    index: torch.Tensor | None = None  # batched (k,) member index inside vmap
    orders: list | None = None  # per nn.Dropout call: its input's dims, outermost in memory first
    calls: int = 0

    def __call__(self, shape, p: float, like: torch.Tensor, order: bool = True) -> torch.Tensor:
        if order:
            perm = self.orders[self.calls] if self.orders is not None and self.calls < len(self.orders) else None
            self.calls += 1
            if perm is None or len(perm) != len(shape):
                raise RuntimeError("dropout calls differ from the solo model's recorded ones")
        else:
            perm = tuple(range(len(shape)))
        if p == 1.0:
            return torch.zeros(shape, dtype=like.dtype, device=like.device)
        if self.gens is None:
            return torch.ones(shape, dtype=like.dtype, device=like.device)
        stored = [shape[d] for d in perm]
        back = sorted(range(len(perm)), key=perm.__getitem__)
        drawn = [torch.empty(stored, dtype=like.dtype, device=like.device).bernoulli_(1 - p, generator=g)
                 .div_(1 - p).permute(back) for g in self.gens]
        return torch.stack(drawn)[self.index]  # (k, *shape) -> this member's (*shape)


def dropout_orders(model: nn.Module, req: "StepRequest") -> list:
    """The memory order of every nn.Dropout input, in call order, in one solo loss of a copy of
    `model` (no optimiser step; the global generators are left as they were)."""
    solo = copy.deepcopy(model)
    orders: list = []

    def hook(module, args):
        x = args[0]
        orders.append(tuple(sorted(range(x.ndim), key=lambda d: -x.stride(d))))

    for m in solo.modules():
        if type(m) is nn.Dropout:
            m.register_forward_pre_hook(hook)
    devices = [req.target.device] if req.target.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # with autograd on: some losses take gradients inside
        (req.loss_fn or solo.loss)(req.batch, req.class_text, req.target)
    return orders


_MASKS = _Masks()  # only the thread running a round touches it (under Pack's lock)


class _PackedDropout(nn.Dropout):
    def forward(self, x):
        if not self.training:
            return x
        if self.p == 0:  # F.dropout draws nothing then, but the call still counts in the recorded order
            _MASKS.calls += 1
            return x
        return x * _MASKS(x.shape, self.p, x)


class _PackedAttention(nn.MultiheadAttention):
    """nn.MultiheadAttention's math (batch_first, one embed dim, no bias_k/v, no zero attention), with
    the attention-weight dropout drawn per member. Other layouts raise, so the probe falls back."""

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if not self.batch_first or not self._qkv_same_embed_dim or self.bias_k is not None or self.add_zero_attn \
                or need_weights or is_causal:
            raise NotImplementedError("packed attention covers batch_first, need_weights=False only")
        B, Lq, E = query.shape
        Lk, H = key.shape[1], self.num_heads
        dh = E // H
        wq, wk, wv = self.in_proj_weight.chunk(3)
        bq, bk, bv = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None, None, None)
        q = F.linear(query, wq, bq).reshape(B, Lq, H, dh).transpose(1, 2)  # (B, H, Lq, dh)
        k = F.linear(key, wk, bk).reshape(B, Lk, H, dh).transpose(1, 2)  # (B, H, Lk, dh)
        v = F.linear(value, wv, bv).reshape(B, Lk, H, dh).transpose(1, 2)  # (B, H, Lk, dh)
        scores = q @ k.transpose(-2, -1) / math.sqrt(dh)  # (B, H, Lq, Lk)
        for m in (attn_mask, None if key_padding_mask is None else key_padding_mask[:, None, None, :]):
            if m is None:
                continue
            scores = scores.masked_fill(m, float("-inf")) if m.dtype == torch.bool else scores + m
        attn = scores.softmax(dim=-1)  # (B, H, Lq, Lk)
        if self.training and self.dropout > 0:  # drawn as the solo SDPA draws it: (B, H, Lq, Lk) in order
            attn = attn * _MASKS(attn.shape, self.dropout, attn, order=False)
        out = (attn @ v).transpose(1, 2).reshape(B, Lq, E)  # (B, H, Lq, dh) -> (B, Lq, E)
        return self.out_proj(out), None


class _LossCall(nn.Module):
    """model.loss as a forward, so torch.func.functional_call can run it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, index, class_text, target, *fields):
        _MASKS.index, _MASKS.calls = index, 0
        return self.model.loss(Batch(*fields), class_text, target)


def make_template(model: nn.Module) -> _LossCall:
    tmpl = copy.deepcopy(model)
    for m in tmpl.modules():
        if type(m) is nn.Dropout:
            m.__class__ = _PackedDropout
        elif type(m) is nn.MultiheadAttention:
            m.__class__ = _PackedAttention
    return _LossCall(tmpl)


@dataclass
class StepRequest:
    """One member's next training step, and (once the round ran) its (loss, terms) or error."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    batch: Batch
    class_text: torch.Tensor
    target: torch.Tensor
    loss_fn: object
    rng: MemberRNG
    result: tuple | None = None
    error: BaseException | None = None
    done: bool = False

    def signature(self) -> tuple:
        """Members with equal signatures can share one vmapped call."""
        shapes = tuple((n, tuple(p.shape)) for n, p in self.model.named_parameters())
        fields = tuple(None if getattr(self.batch, f) is None else tuple(getattr(self.batch, f).shape)
                       for f in _BATCH_FIELDS)
        return (type(self.model), repr(self.model.cfg), shapes, fields, tuple(self.class_text.shape),
                tuple(self.target.shape), self.loss_fn is None)


def solo_round_step(req: StepRequest) -> tuple:
    with req.rng.swapped():
        return solo_step(req.model, req.optimizer, req.batch, req.class_text, req.target, req.loss_fn)


def vmapped_step(group: list[StepRequest], tmpl: _LossCall, orders: list, probe: bool) -> list[tuple]:
    """One step of every member of `group` as one vmapped call (see the module docstring). probe: check
    first, with masks of ones on copies of the buffers, that vmap runs the loss with no other random
    draw (randomness="error"); raises if not, before anything of the members changed."""
    k = len(group)
    pnames = [n for n, _ in tmpl.model.named_parameters()]
    bnames = [n for n, _ in tmpl.model.named_buffers()]
    members_p = [dict(r.model.named_parameters()) for r in group]
    members_b = [dict(r.model.named_buffers()) for r in group]
    dev = group[0].target.device
    fields = [None if getattr(group[0].batch, f) is None else torch.stack([getattr(r.batch, f) for r in group])
              for f in _BATCH_FIELDS]  # each (k, B, ...) or None
    args = (torch.arange(k, device=dev), torch.stack([r.class_text for r in group]),
            torch.stack([r.target for r in group]), *fields)
    in_dims = tuple(None if a is None else 0 for a in args)

    def call(p, b, *a):
        with warnings.catch_warnings():  # vmap's "no batching rule, performance drop" notes: measured anyway
            warnings.filterwarnings("ignore", message="There is a performance drop")
            return torch.func.functional_call(tmpl, ({"model." + n: x for n, x in p.items()},
                                                     {"model." + n: x for n, x in b.items()}), a)

    _MASKS.orders = orders
    if probe:
        with torch.no_grad():
            P = {n: torch.stack([m[n].detach() for m in members_p]) for n in pnames}
            Bc = {n: torch.stack([m[n] for m in members_b]) for n in bnames}
            _MASKS.gens = None
            torch.func.vmap(call, in_dims=(0, 0, *in_dims), randomness="error")(P, Bc, *args)
    P = {n: torch.stack([m[n].detach() for m in members_p]).requires_grad_(members_p[0][n].requires_grad)
         for n in pnames}  # (k, ...) each
    Bf = {n: torch.stack([m[n] for m in members_b]) for n in bnames}
    _MASKS.gens = [r.rng.dev for r in group]
    try:
        loss, terms = torch.func.vmap(call, in_dims=(0, 0, *in_dims), randomness="same")(P, Bf, *args)  # (k,)
        if _MASKS.calls != len(orders):
            raise RuntimeError("dropout calls differ from the solo model's recorded ones")
    finally:
        _MASKS.gens, _MASKS.index, _MASKS.orders = None, None, None
    for r in group:
        r.optimizer.zero_grad(set_to_none=True)
    loss.sum().backward()
    out = []
    for i, r in enumerate(group):
        with torch.no_grad():
            for n in pnames:
                g = P[n].grad  # a view of the stacked gradient: the optimisers only read it
                members_p[i][n].grad = None if g is None else g[i]
            for n in bnames:
                members_b[i][n].copy_(Bf[n][i])
        r.optimizer.step()
        out.append((loss[i].detach(), {t: v[i] for t, v in terms.items()}))
    return out
