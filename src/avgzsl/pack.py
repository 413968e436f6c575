"""Packed runs: k protocol runs of one model class trained in one process as one stacked model.

Why: the models here are small (batch-64 matmuls a few hundred wide), so a solo run leaves much of a
machine's arithmetic idle, above all a GPU's. A pack trains k runs (different seeds, or variants that
differ only in loss weights) with one vmapped functional call per step instead of k calls.

What each member keeps to itself (nothing of its result depends on the others):

    member i = one `run_protocol` call, in its own thread, with its own config, run folder, model,
               optimiser, scheduler, sampler stream, best epoch, stage 2 and results
    step     = the only shared work: when every live member waits at its next training step, one
               vmapped call of a stacked model computes all k losses and gradients (stacked.py); each
               member's own optimiser then steps.
    RNG      = each member owns the generators a solo run would use (`stacked.MemberRNG`), captured
               right after its model is built; dropout masks are drawn from them as the solo run draws.

Exactness: a pack of one steps with the solo code itself (`train.solo_step`) and is bit-identical to
the solo run. For k > 1 each member's step equals its solo step to float tolerance (1e-5,
tests/test_pack.py, every registered model): the vmapped matmuls sum in another order, so over a
whole run a packed member and its solo run drift apart like two runs on different BLAS builds.

Which models vmap: a model whose training step's only randomness is `nn.Dropout` and
`nn.MultiheadAttention`'s attention dropout (both re-drawn here per member), and whose loss has no
data-dependent Python control flow. The first step of every group is probed in vmap's
randomness="error" mode with masks of ones; a model that fails the probe (its own random draws, e.g.
random negatives or a GAN's noise; `.item()` calls) is stepped member after member with the solo code,
each member's generators swapped in: correct, no faster. `GZSLModel.packable` says which registered
models vmap (measured by the tests); the executor only packs those.

Speed (benchmarks/pack.py, docs/scaling.md): on a CPU a vmapped step costs more than the k solo steps
it replaces (the matmuls are no larger, and the stacking is extra work), so `reproduce --pack auto`'s
probe keeps packs only where they measure faster, which on the 2-core CPU here is nowhere.

Determinism: a round waits for every live member (one that is validating or saving is waited for), so
which members share a step never depends on thread timing: a packed reproduction is repeatable. Only one
member thread computes at a time (each holds the pack's lock except while it waits for a round), so
the members' evaluations run one after another at the process's torch threads, never k at once.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import torch

from .errors import AvgzslError
from .protocol import run_protocol
from .stacked import MemberRNG, StepRequest, dropout_orders, make_template, solo_round_step, vmapped_step

# ---- the rendezvous --------------------------------------------------------------------------

@dataclass
class Pack:
    """k members' meeting point. Member threads call `member(i)`'s build/step/leave; a round runs when
    every live member waits at a step (see the module docstring)."""

    k: int
    device: torch.device
    vmap: bool = True  # False: every round steps member after member with the solo code
    _cv: threading.Condition = field(default_factory=threading.Condition)
    _live: set = field(default_factory=set)
    _waiting: dict = field(default_factory=dict)
    _templates: dict = field(default_factory=dict)  # group key -> template, or None (does not vmap)
    stats: dict = field(default_factory=lambda: {"rounds": 0, "vmapped_steps": 0, "solo_steps": 0})

    def __post_init__(self):
        self._live = set(range(self.k))
        self.rngs = [MemberRNG(torch.device(self.device)) for _ in range(self.k)]

    def member(self, i: int) -> "PackMember":
        return PackMember(self, i)

    def _build(self, i: int, build):
        with self._cv:  # the global generators are seeded and drawn from here: one member at a time
            out = build()
            self.rngs[i].capture()
        return out

    def _step(self, i: int, req: StepRequest) -> tuple:
        with self._cv:
            self._waiting[i] = req
            self._run_ready()
            while not req.done:
                self._cv.wait()
        if req.error is not None:
            raise req.error
        return req.result

    def _leave(self, i: int) -> None:
        with self._cv:
            self._live.discard(i)
            self._run_ready()

    def _run_ready(self) -> None:
        if not self._waiting or set(self._waiting) != self._live:
            return
        reqs = [self._waiting.pop(i) for i in sorted(self._waiting)]
        self.stats["rounds"] += 1
        groups: dict = {}
        for r in reqs:
            groups.setdefault(r.signature(), []).append(r)
        current = {tuple(id(r.model) for r in g) for g in groups.values()}
        self._templates = {k: v for k, v in self._templates.items() if k in current}  # members moved on
        for group in groups.values():
            try:
                self._run_group(group)
            except BaseException as e:  # noqa: BLE001 - handed to each member's own thread
                for r in group:
                    r.error = e
        for r in reqs:
            r.done = True
        self._cv.notify_all()

    def _run_group(self, group: list[StepRequest]) -> None:
        key = tuple(id(r.model) for r in group)
        tried = self._templates.get(key, 0)  # 0: never tried; None: does not vmap
        if self.vmap and len(group) > 1 and group[0].loss_fn is None and tried is not None:
            first = tried == 0
            states = [r.rng.state() for r in group]
            try:
                if first:
                    self._templates[key] = (make_template(group[0].model), dropout_orders(group[0].model, group[0]))
                results = vmapped_step(group, *self._templates[key], probe=first)
            except Exception:  # noqa: BLE001 - the first round failed (see vmapped_step): this group steps solo
                if not first:
                    raise
                for r, st in zip(group, states):  # nothing of the failed try may move a member's stream
                    r.rng.set_state(st)
                self._templates[key] = None
                results = None
            if results is not None:
                for r, res in zip(group, results):
                    r.result = res
                self.stats["vmapped_steps"] += len(group)
                return
        for r in group:
            r.result = solo_round_step(r)
            self.stats["solo_steps"] += 1


@dataclass
class PackMember:
    """What one member's protocol run sees of its pack (protocol._run_protocol's `pack`)."""

    pack: Pack
    index: int

    @property
    def rng(self) -> MemberRNG:
        return self.pack.rngs[self.index]

    def build(self, build):
        return self.pack._build(self.index, build)

    def step(self, model, optimizer, batch, class_text, target, loss_fn=None) -> tuple:
        return self.pack._step(self.index, StepRequest(model, optimizer, batch, class_text, target, loss_fn, self.rng))

    def leave(self) -> None:
        self.pack._leave(self.index)


def run_members(jobs: list, device: str = "cpu", vmap: bool = True) -> tuple[list, list, dict]:
    """Run each `job(member)` (a callable that runs one protocol with `pack=member`) as one member of a
    pack, each in its own thread. Returns (results, errors, the pack's stats): one entry per job, an
    error None where the job returned. A member that fails leaves the pack; the others go on."""
    pack = Pack(len(jobs), torch.device(device), vmap=vmap)
    results: list = [None] * len(jobs)
    errors: list = [None] * len(jobs)

    def work(i):
        member = pack.member(i)
        # one member computes at a time (the lock is let go only while waiting for a round): k threads
        # each evaluating at the process's torch threads would oversubscribe the cores, and OpenMP's
        # spinning workers make that many times slower (docs/scaling.md)
        with pack._cv:
            try:
                results[i] = jobs[i](member)
            except BaseException as e:  # noqa: BLE001 - handed back to the caller's thread
                errors[i] = e
            finally:
                member.leave()

    threads = [threading.Thread(target=work, args=(i,), name=f"pack-member-{i}", daemon=True)
               for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors, dict(pack.stats)


def refuse_reference(cfgs: list) -> None:
    if any(c.reference() for c in cfgs):
        raise AvgzslError("reference-mode runs are not packed (their steps draw from the reference's RNG "
                          "streams); run them solo")


def run_packed(cfgs: list, bench, out_dirs: list | None = None, device: str = "cpu", vmap: bool = True,
               stages: int = 2, on_epoch=None, stats: dict | None = None) -> list:
    """The protocol for every config in `cfgs` as one pack on one benchmark; returns each run's results
    dict (what `run_protocol` returns) in order. If a member fails, its error is raised after every
    member ended (the others finish and write their run folders). `stats`, a dict, receives the pack's
    counts (rounds, vmapped_steps, solo_steps)."""
    refuse_reference(cfgs)
    out_dirs = out_dirs if out_dirs is not None else [None] * len(cfgs)
    if len(out_dirs) != len(cfgs):
        raise AvgzslError(f"run_packed: {len(cfgs)} configs but {len(out_dirs)} run folders")
    jobs = [lambda member, c=c, o=o: run_protocol(c, bench, o, device=device, stages=stages, on_epoch=on_epoch,
                                                  pack=member) for c, o in zip(cfgs, out_dirs)]
    results, errors, counts = run_members(jobs, device, vmap)
    if stats is not None:
        stats.update(counts)
    for e in errors:
        if e is not None:
            raise e
    return results
