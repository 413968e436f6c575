"""The test-time rule of feature-generating models (`fvaegan`; later AVFS): a classifier per candidate set.

A feature generator is not an embedding model: it learns to generate video features x from class text
w, and a softmax classifier trained on real seen + generated unseen features classifies (f-CLSWGAN,
f-VAEGAN-D2). It fits the protocol's contract (models/base.py) without any special case there:

    embed_classes(T)   T (C, Dt) the candidate texts  ->  (C, Dx + 1) rows [W_c, b_c] of a linear softmax
                       classifier trained for exactly these candidates on
                         - the real bank features of every candidate the model was trained on, and
                         - syn_num generated features G(z, t_c), z ~ N(0, I), of every other candidate;
                       inputs L2-normalised, `cls_epochs` epochs of Adam (lr `cls_lr`, betas (0.5, 0.999),
                       batch `cls_bs`): the classifier of the AVCA-GZSL reference (src/classifier_fsl.py)
    embed_videos(b)    [normalize(x), 1]                                                 (B, Dx + 1)
    distances          -log softmax(embed_videos @ embed_classesᵀ): the negative classifier log-probability

so calibrated stacking and the β search apply as for every model, stage 1 selects the epoch on
validation and the test set is only ever scored. `predict` with new class names works the same way: the
new names get generated features.

The feature bank (ours: the reference trains its classifier on all real training videos, which a model
does not hold) is a ring buffer of the last `bank_size` training videos the model's loss saw
(`remember`; class-balanced draws, so about equal rows per class), stored in float16. Each row carries a
class key t · r (float64, a fixed random r): equal texts give equal keys up to rounding, distinct texts
keys that differ by O(1), so candidates are matched without class ids. The bank is part of the model's
state (checkpoints reload it). The classifier's noise and data order come from a generator seeded with
`eval_seed`: one model gives one classifier, a reloaded checkpoint gives equal distances, and an
evaluation never draws from the training RNG stream.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..settings import POSITIVE, SEED, WIDTH, setting
from .base import Batch, GZSLModel


@dataclass
class GenerativeEvalConfig:
    syn_num: int = setting(1000, WIDTH)  # generated features per candidate without real ones (AVCA-GZSL's
    #                                      f-VAEGAN scripts: 1000 UCF/ActivityNet, 10000 VGGSound)
    cls_epochs: int = setting(30, WIDTH)  # classifier epochs (reference --nepoch_classifier 30)
    cls_lr: float = setting(1e-3, POSITIVE)  # (reference --classifier_lr 0.001)
    cls_bs: int = setting(1000, WIDTH)  # classifier batch (the reference passes syn_num as its batch size)
    bank_size: int = setting(4096, WIDTH)  # real training features kept for the classifier (ours)
    eval_seed: int = setting(0, SEED)  # seeds the classifier's noise and order (ours)


class FeatureGeneratingModel(GZSLModel):
    """Base of the generative models. A subclass implements `features(batch)` -> (B, Dx) (what it
    generates, as the classifier sees it), `generate(z, w)` -> (B, Dx) and `latent_dim`; calls
    `init_bank(Dx, Dt)` in __init__ and `remember(x, w)` from its training loss."""

    latent_dim: int

    def features(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def generate(self, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def init_bank(self, dx: int, dt: int) -> None:
        g = torch.Generator().manual_seed(int(self.cfg.eval_seed))  # not the global stream: weights unchanged
        self.register_buffer("key_proj", torch.randn(dt, generator=g, dtype=torch.float64))
        self.register_buffer("bank_x", torch.zeros(self.cfg.bank_size, dx, dtype=torch.float16))
        self.register_buffer("bank_key", torch.zeros(self.cfg.bank_size, dtype=torch.float64))
        self.register_buffer("bank_written", torch.zeros((), dtype=torch.long))  # rows ever written

    def _keys(self, text: torch.Tensor) -> torch.Tensor:
        return (text.double() * self.key_proj).sum(dim=1)  # (K,)

    @torch.no_grad()
    def remember(self, x: torch.Tensor, w: torch.Tensor) -> None:
        """Write a training batch (x (B, Dx), its class texts w (B, Dt)) into the ring buffer."""
        cap, n = self.bank_x.shape[0], x.shape[0]
        rows = (self.bank_written + torch.arange(n, device=x.device)) % cap  # (B,) no host sync
        self.bank_x[rows] = x.to(self.bank_x.dtype)
        self.bank_key[rows] = self._keys(w)
        self.bank_written += n

    def embed_videos(self, batch: Batch) -> torch.Tensor:
        x = F.normalize(self.features(batch), dim=1)  # (B, Dx)
        return torch.cat([x, torch.ones_like(x[:, :1])], dim=1)  # (B, Dx + 1): the bias column

    def embed_classes(self, text: torch.Tensor) -> torch.Tensor:
        """(C, Dt) candidate texts -> (C, Dx + 1) rows [W_c, b_c] of a classifier trained for them."""
        # the protocol evaluates under inference_mode; fitting the classifier needs autograd
        with torch.inference_mode(False), torch.enable_grad():
            X, y = self.classifier_data(text.float().clone())
            return self._fit_classifier(X, y, len(text))

    def distances(self, batch: Batch, class_emb: torch.Tensor) -> torch.Tensor:
        scores = self.embed_videos(batch) @ class_emb.T  # (B, Dx + 1) @ (Dx + 1, C) -> (B, C)
        return -torch.log_softmax(scores, dim=1)

    def _generator(self, device) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(int(self.cfg.eval_seed))

    @torch.no_grad()
    def classifier_data(self, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(X (N, Dx) normalised, y (N,) candidate rows): real bank rows of the candidates that have them,
        syn_num generated rows for the others."""
        device, cfg = text.device, self.cfg
        keys = self._keys(text)  # (C,)
        filled = torch.arange(len(self.bank_key), device=device) < self.bank_written  # (cap,)
        bank_keys = self.bank_key[filled]  # (n,)
        close = (bank_keys[:, None] - keys[None, :]).abs() <= 1e-6 * (1 + keys.abs()[None, :])  # (n, C)
        has_row = close.any(dim=0)  # (C,)
        row_of, label = close.any(dim=1), close.float().argmax(dim=1)  # (n,), (n,)
        X = [self.bank_x[filled][row_of].float()]  # (n_real, Dx)
        y = [label[row_of]]
        missing = torch.nonzero(~has_row).flatten()
        if len(missing):
            wm = text[missing].repeat_interleave(cfg.syn_num, dim=0)  # (M * syn_num, Dt)
            z = torch.randn(len(wm), self.latent_dim, generator=self._generator(device), device=device)
            X.append(self.generate(z, wm))  # (M * syn_num, Dx)
            y.append(missing.repeat_interleave(cfg.syn_num))
        return F.normalize(torch.cat(X), dim=1), torch.cat(y)  # the classifier normalises its inputs

    def _fit_classifier(self, X: torch.Tensor, y: torch.Tensor, n_classes: int) -> torch.Tensor:
        cfg, device = self.cfg, X.device
        g = self._generator(device)
        W = (torch.randn(n_classes, X.shape[1], generator=g, device=device) * 0.02).requires_grad_(True)
        b = torch.zeros(n_classes, device=device, requires_grad=True)
        opt = torch.optim.Adam([W, b], lr=cfg.cls_lr, betas=(0.5, 0.999))
        order = torch.randperm(len(X), generator=g, device=device)  # shuffled once, as the reference
        X, y = X[order], y[order]
        for _ in range(cfg.cls_epochs):
            for start in range(0, len(X), cfg.cls_bs):
                xb, yb = X[start:start + cfg.cls_bs], y[start:start + cfg.cls_bs]
                loss = F.cross_entropy(xb @ W.T + b, yb)  # (b, C) logits; CE = the reference's NLL of log-softmax
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return torch.cat([W, b[:, None]], dim=1).detach()  # (C, Dx + 1)
