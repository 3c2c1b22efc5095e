"""Two ways to solve the placement MILP: exactly with HiGHS, or at scale with a proven gap.

``solve_exact`` hands every candidate leg to HiGHS's branch and cut; its answer is optimal (to
``mip_rel_gap``) when the status says so, with HiGHS's own dual bound.

``solve_scalable`` is LP-based and reports its gap against the LP bound:

1. *Column generation.* A greedy pass (most constrained workloads first) gives every workload a
   leg that fits; the LP relaxation starts from those and each workload's cheapest legs (all of
   them for workloads with few options), prices every other leg with the duals
   (``formulation.reduced_costs``) and adds the most negative, in a master LP that keeps its
   basis between rounds (``formulation.Master``). ``LB = z_LP + sum(min(0, reduced cost))``
   over the legs left out is a valid lower bound on the full LP — and so on the MILP — at every
   round; it equals ``z_LP`` once no leg prices out.
2. *Fix and repair.* Workloads whose LP solution is integral keep it. The rest (in a basic
   solution few: at most one per binding shared row), widened by the workloads sitting on the
   pools they contend for, are placed by an LP-guided greedy, then re-solved as a MILP on the
   capacity the fixed workloads leave, started from the greedy answer (kept only if better);
   a workload still out tries to make room by moving the occupants of a pool it needs.
3. *Local search.* Move single legs to cheaper ones that fit the remaining capacity and keep
   every domain, cover, budget and anti-affinity constraint, until no move improves.

The gap reported is ``(objective - LB) / LB``. If capacity leaves workloads out, ``LB`` bounds
the cost of placing exactly the ones placed: from the elastic LP's duals at once (a Lagrangian
bound), then by column generation on that LP while time remains.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from isthmus.placement.formulation import (
    Formulation,
    Master,
    Meta,
    RunResult,
    Solution,
    build,
    reduced_costs,
    run,
)
from isthmus.placement.legs import Candidates

__all__ = ["solve_exact", "solve_scalable"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

RC_TOLERANCE = 1e-6
FEW_LEGS = 60
CG_RELATIVE_TOLERANCE = 1e-5
"""Stop pricing when the LP bound is this close to the restricted LP (the gap it leaves is
part of the gap reported)."""
INTEGRAL = 1e-6


def _scope(cands: Candidates, meta: Meta | None = None) -> IntArray:
    """Workloads the solver decides on: those with legs, and (given ``meta``) that could be
    placed alone — enough failure domains for their legs, enough within each metro's SLO,
    a budget their cheapest legs meet. The rest are infeasible whatever others do."""
    counts = np.diff(cands.start)
    scope = np.nonzero(counts > 0)[0].astype(np.int64)
    if meta is None:
        return scope
    keep = []
    for w in scope.tolist():
        n = int(meta.legs[w])
        legs = np.arange(int(cands.start[w]), int(cands.start[w + 1]))
        if n > 1:
            if len(np.unique(cands.domain[legs])) < n:
                continue
            need = int(meta.cover_required[w])
            bits = cands.cover[legs]
            if need and any(
                len(np.unique(cands.domain[legs[((bits >> m) & 1).astype(bool)]])) < need
                for m in range(int(meta.metros[w]))
            ):
                continue
        budget = meta.budget[w]
        if np.isfinite(budget) and np.sort(cands.cost[legs])[:n].sum() > budget + 1e-9:
            continue
        keep.append(w)
    return np.array(keep, dtype=np.int64)


def _nothing_to_decide(method: str, status: str) -> Solution:
    empty = np.zeros(0, dtype=np.int64)
    return Solution(empty, empty, 0.0, 0.0, method, status, 0.0)


def solve_exact(
    cands: Candidates, meta: Meta, *, time_limit_s: float = 60.0, mip_rel_gap: float = 1e-6
) -> Solution:
    """Branch and cut over every candidate leg."""
    started = time.perf_counter()
    scope = _scope(cands, meta)
    if len(scope) == 0:
        return _nothing_to_decide("milp", "Optimal")
    cols = np.arange(cands.count, dtype=np.int64)
    cols = cols[np.isin(cands.workload[cols], scope)]
    form = build(cands, meta, cols, scope)
    result = run(form, integral=True, time_limit_s=time_limit_s, mip_rel_gap=mip_rel_gap)
    if len(result.values) == 0:
        return Solution(
            chosen=np.zeros(0, dtype=np.int64),
            unplaced=scope,
            objective=float("inf"),
            bound=result.bound,
            method="milp",
            status=result.status,
            seconds=time.perf_counter() - started,
        )
    x = result.values[: len(cols)]
    u = result.values[len(cols) :]
    chosen = cols[x > 0.5]
    penalty = float(meta.penalty[scope[u > 0.5]].sum())
    return Solution(
        chosen=chosen,
        unplaced=scope[u > 0.5],
        objective=float(cands.objective[chosen].sum()),
        bound=min(result.bound, result.objective) - penalty,
        method="milp",
        status=result.status,
        seconds=time.perf_counter() - started,
        stats={"columns": float(len(cols)), "rows": float(form.num_rows)},
    )


def _initial_columns(
    cands: Candidates, meta: Meta, scope: IntArray, per_workload: int, few: int = FEW_LEGS
) -> IntArray:
    """Each workload's cheapest legs (all of them when it has at most ``few``: the
    workloads with few options are the ones contending for scarce compliant pools), plus for
    multi-leg workloads enough legs to cover every metro in distinct domains."""
    picks: list[IntArray] = []
    for w in scope.tolist():
        lo, hi = int(cands.start[w]), int(cands.start[w + 1])
        n = int(meta.legs[w])
        take = per_workload * n if hi - lo > few else hi - lo
        picks.append(np.arange(lo, min(hi, lo + take), dtype=np.int64))
        if n > 1:
            legs = np.arange(lo, hi, dtype=np.int64)
            _, first_in_domain = np.unique(cands.domain[legs], return_index=True)
            picks.append(legs[np.sort(first_in_domain)[: 2 * n]])
            for m in range(int(meta.metros[w])):
                covering = legs[((cands.cover[legs] >> m) & 1).astype(bool)]
                _, first = np.unique(cands.domain[covering], return_index=True)
                picks.append(covering[np.sort(first)[: 2 * n]])
    return np.unique(np.concatenate(picks)) if picks else np.zeros(0, dtype=np.int64)


def _most_negative(
    cands: Candidates, legs: IntArray, rc: FloatArray, per_workload: int
) -> IntArray:
    order = np.lexsort((rc, cands.workload[legs]))
    legs, w = legs[order], cands.workload[legs[order]]
    first = np.ones(len(w), dtype=bool)
    first[1:] = w[1:] != w[:-1]
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(w)), 0))
    rank = np.arange(len(w)) - group_start
    return legs[rank < per_workload]


class _State:
    """A partial assignment with the capacity it leaves."""

    def __init__(self, cands: Candidates, meta: Meta) -> None:
        self.cands = cands
        self.meta = meta
        self.residual = meta.free.copy()
        self.picks: dict[int, list[int]] = {}
        self.occupants: dict[int, set[int]] = {}
        self.closed = np.zeros(len(meta.free), dtype=bool)
        """Pools a relocation may not use (the one being freed)."""
        self.partners: dict[int, list[int]] = {}
        for a, b in meta.anti_affinity:
            self.partners.setdefault(a, []).append(b)
            self.partners.setdefault(b, []).append(a)

    def place(self, w: int, legs: list[int]) -> None:
        for leg in legs:
            slot = int(self.cands.slot[leg])
            self.residual[slot] -= self.cands.devices[leg]
            self.occupants.setdefault(slot, set()).add(w)
        self.picks[w] = legs

    def remove(self, w: int) -> list[int]:
        legs = self.picks.pop(w, [])
        for leg in legs:
            slot = int(self.cands.slot[leg])
            self.residual[slot] += self.cands.devices[leg]
            self.occupants.get(slot, set()).discard(w)
        return legs

    def eject(self, w: int, tries: int = 8) -> bool:
        """Place ``w`` by moving workloads out of a pool it needs (each to its next-cheapest
        leg elsewhere); undone if ``w`` still does not fit."""
        c = self.cands
        legs = np.arange(int(c.start[w]), int(c.start[w + 1]), dtype=np.int64)
        tried: set[int] = set()
        for leg in legs.tolist():
            slot = int(c.slot[leg])
            if slot in tried or not np.isfinite(self.residual[slot]):
                continue
            tried.add(slot)
            if len(tried) > tries:
                break
            moved: list[tuple[int, list[int]]] = []
            for v in sorted(self.occupants.get(slot, ()), key=lambda v: -len(self.picks[v])):
                if self.residual[slot] >= c.devices[leg] - 1e-9:
                    break
                old = self.remove(v)
                self.closed[slot] = True  # keep the relocated workload out of this pool
                new = self.greedy(v)
                self.closed[slot] = False
                if new is None:
                    self.place(v, old)
                    continue
                self.place(v, new)
                moved.append((v, old))
            found = self.greedy(w) if moved else None
            if found is not None:
                self.place(w, found)
                return True
            for v, old in reversed(moved):
                self.remove(v)
                self.place(v, old)
        return False

    def blocked_domains(self, w: int) -> set[int]:
        out: set[int] = set()
        for partner in self.partners.get(w, ()):
            out.update(int(self.cands.domain[leg]) for leg in self.picks.get(partner, ()))
        return out

    def fits(self, legs: IntArray) -> BoolArray:
        c = self.cands
        slots = c.slot[legs]
        room = c.devices[legs] <= self.residual[slots] + 1e-9
        return np.asarray(room & ~self.closed[slots], dtype=bool)

    def valid(self, w: int, legs: list[int]) -> bool:
        """Domains distinct, cover met, budget kept (capacity is checked by the caller)."""
        c, meta = self.cands, self.meta
        if len(legs) != int(meta.legs[w]):
            return False
        domains = [int(c.domain[leg]) for leg in legs]
        if len(set(domains)) != len(domains) or set(domains) & self.blocked_domains(w):
            return False
        if any(int(c.workload[leg]) != w for leg in legs):
            return False
        need = int(meta.cover_required[w])
        if need and meta.legs[w] > 1:
            for m in range(int(meta.metros[w])):
                if sum(int(c.cover[leg] >> m) & 1 for leg in legs) < need:
                    return False
        budget = meta.budget[w]
        return not (np.isfinite(budget) and c.cost[legs].sum() > budget + 1e-9)

    def greedy(self, w: int, preference: FloatArray | None = None) -> list[int] | None:
        """Legs that fit, cheapest (or most preferred, then cheapest) first, covering needy
        metros first."""
        c, meta = self.cands, self.meta
        legs = np.arange(int(c.start[w]), int(c.start[w + 1]), dtype=np.int64)
        if preference is not None:
            legs = legs[np.argsort(-preference[legs], kind="stable")]
        legs = legs[self.fits(legs)]
        blocked = self.blocked_domains(w)
        if blocked:
            legs = legs[~np.isin(c.domain[legs], np.array(sorted(blocked)))]
        n = int(meta.legs[w])
        if n == 1:
            for leg in legs.tolist():
                if self.valid(w, [leg]):
                    return [leg]
            return None
        need = int(meta.cover_required[w])
        owed = np.full(int(meta.metros[w]), need if need else 0)
        picks: list[int] = []
        used: set[int] = set()
        pool_use: dict[int, float] = {}
        for phase in (0, 1):
            for leg in legs.tolist():
                if len(picks) == n:
                    break
                d = int(c.domain[leg])
                if d in used:
                    continue
                slot = int(c.slot[leg])
                if pool_use.get(slot, 0.0) + c.devices[leg] > self.residual[slot] + 1e-9:
                    continue
                bits = int(c.cover[leg])
                helps = any((bits >> m) & 1 and owed[m] > 0 for m in range(len(owed)))
                if phase == 0 and not helps:
                    continue
                picks.append(leg)
                used.add(d)
                pool_use[slot] = pool_use.get(slot, 0.0) + float(c.devices[leg])
                for m in range(len(owed)):
                    if (bits >> m) & 1:
                        owed[m] -= 1
        return picks if self.valid(w, picks) else None

    def improve(self, w: int) -> bool:
        """Replace one leg of ``w`` by a cheaper one if every constraint still holds."""
        c = self.cands
        current = self.picks.get(w)
        if not current:
            return False
        legs = np.arange(int(c.start[w]), int(c.start[w + 1]), dtype=np.int64)
        for i, old in enumerate(current):
            cheaper = legs[c.objective[legs] < c.objective[old] - 1e-9]
            if len(cheaper) == 0:
                continue
            self.residual[c.slot[old]] += c.devices[old]
            cheaper = cheaper[self.fits(cheaper)]
            others = current[:i] + current[i + 1 :]
            for leg in cheaper.tolist():
                trial = [*others, leg]
                if self.valid(w, trial):
                    self.residual[c.slot[leg]] -= c.devices[leg]
                    current[i] = leg
                    return True
            self.residual[c.slot[old]] -= c.devices[old]
        return False


@dataclass
class _Relaxation:
    master: Master
    form: Formulation
    result: RunResult
    cols: IntArray
    rc: FloatArray
    bound: float
    rounds: int
    seconds: float
    converged: bool
    pending: IntArray
    """The legs the next round would add (empty once converged)."""


def _column_generation(
    cands: Candidates,
    meta: Meta,
    scope: IntArray,
    cols: IntArray,
    *,
    elastic: bool,
    deadline: float,
    hard_deadline: float,
    add_per_round: int,
    max_rounds: int,
    resume: _Relaxation | None = None,
) -> _Relaxation:
    """Solve the LP relaxation over ``scope`` by pricing every leg; ``bound`` is valid for the
    full LP at every round (restricted objective plus the negative reduced costs left out).

    A round starts only if the last one's duration still fits before ``deadline``; each LP may
    run until ``hard_deadline``, so the relaxation handed back is solved to optimality.
    ``resume`` continues an earlier run where it stopped (its best bound is kept)."""
    started = time.perf_counter()
    in_scope = np.zeros(len(cands.needs), dtype=bool)
    in_scope[scope] = True
    legs = np.nonzero(in_scope[cands.workload])[0].astype(np.int64)
    if resume is None:
        master = Master(cands, meta, cols, scope, elastic=elastic)
        rounds = 0
        best = -math.inf
    else:
        master = resume.master
        master.add(resume.pending)
        rounds = resume.rounds
        best = resume.bound
    fresh = np.zeros(0, dtype=np.int64)
    while True:
        began = time.perf_counter()
        result = master.solve(max(0.5, hard_deadline - began))
        form = master.form
        cols = form.cols
        rc = np.zeros(cands.count)
        rc[legs] = reduced_costs(cands, meta, form, result.row_dual, legs)
        outside = np.zeros(cands.count, dtype=bool)
        outside[legs] = True
        outside[cols] = False
        negative = outside & (rc < -RC_TOLERANCE)
        bound = result.objective + float(rc[negative].sum())
        rounds += 1
        if not result.optimal:
            break
        best = max(best, bound)
        converged = not negative.any() or (
            result.objective - bound <= CG_RELATIVE_TOLERANCE * abs(result.objective)
        )
        fresh = (
            np.zeros(0, dtype=np.int64)
            if converged
            else _most_negative(cands, np.nonzero(negative)[0], rc[negative], add_per_round)
        )
        if converged or rounds >= max_rounds or 2 * time.perf_counter() - began > deadline:
            break
        master.add(fresh)
    return _Relaxation(
        master,
        form,
        result,
        cols,
        rc,
        best,
        rounds,
        time.perf_counter() - started,
        bool(result.optimal and len(fresh) == 0),
        fresh,
    )


def _polish(
    state: _State,
    cands: Candidates,
    meta: Meta,
    cols: IntArray,
    rc: FloatArray,
    open_workloads: IntArray,
    per_workload: int,
    add_per_round: int,
    time_limit_s: float,
) -> bool:
    """Re-solve the open workloads as a MILP on the capacity the others leave, started from
    their greedy legs; keep its answer only if it is feasible and cheaper."""
    before = {w: state.remove(w) for w in open_workloads.tolist() if w in state.picks}
    in_open = np.isin(cands.workload, open_workloads)
    extra = _most_negative(
        cands, np.nonzero(in_open)[0], rc[in_open], max(per_workload, 2 * add_per_round)
    )
    greedy_legs = np.array([leg for legs in before.values() for leg in legs], dtype=np.int64)
    sub_cols = np.union1d(np.union1d(cols[in_open[cols]], extra), greedy_legs)
    blocked = np.array(
        [
            int(cands.domain[leg]) in state.blocked_domains(int(cands.workload[leg]))
            for leg in sub_cols.tolist()
        ],
        dtype=bool,
    )
    sub_cols = sub_cols[~blocked | np.isin(sub_cols, greedy_legs)]
    form = build(cands, meta, sub_cols, open_workloads, free=state.residual)
    start = np.concatenate(
        [
            np.isin(sub_cols, greedy_legs).astype(np.float64),
            np.array([0.0 if w in before else 1.0 for w in open_workloads.tolist()]),
        ]
    )
    result = run(form, integral=True, time_limit_s=time_limit_s, mip_rel_gap=1e-4, start=start)

    def cost(picks: dict[int, list[int]]) -> float:
        legs = [leg for chosen in picks.values() for leg in chosen]
        placed = float(cands.objective[legs].sum()) if legs else 0.0
        return placed + float(meta.penalty[[w for w in open_workloads if w not in picks]].sum())

    after: dict[int, list[int]] = {}
    if len(result.values):
        chosen = sub_cols[result.values[: len(sub_cols)] > 0.5]
        for w in open_workloads.tolist():
            legs = chosen[cands.workload[chosen] == w].tolist()
            if legs and state.valid(w, legs) and bool(state.fits(np.array(legs)).all()):
                state.place(w, legs)
                after[w] = legs
    if after and cost(after) < cost(before) - 1e-9:
        return True
    for w in after:
        state.remove(w)
    for w, legs in before.items():
        state.place(w, legs)
    return False


def _placed_set_bound(
    relaxed: _Relaxation, cands: Candidates, meta: Meta, placed: IntArray
) -> float:
    """A lower bound on the cost of placing exactly ``placed``, from the elastic LP's duals.

    For the LP without the unplaced workloads, any duals of the right signs give
    ``sum_i y_i b_i + sum_j min(0, c_j - A_j^T y)`` as a bound (Lagrangian); the elastic LP's
    duals are used on the rows that remain, and every leg of a placed workload is priced.
    """
    if not relaxed.result.optimal:
        return -math.inf
    form, y, rc = relaxed.form, relaxed.result.row_dual, relaxed.rc
    keep = np.zeros(len(cands.needs), dtype=bool)
    keep[placed] = True
    total = 0.0
    for i, w in enumerate(form.scope.tolist()):
        if keep[w]:
            total += float(y[form.assign_row[i]]) * float(meta.legs[w])
    for slot, row in form.cap_row.items():
        total += float(y[row]) * float(meta.free[slot])
    for w, row in form.budget_row.items():
        if keep[w]:
            total += float(y[row]) * float(meta.budget[w])
    for (w, _), row in form.domain_row.items():
        if keep[w]:
            total += float(y[row])
    for (w, _), row in form.cover_row.items():
        if keep[w]:
            total += float(y[row]) * float(meta.cover_required[w])
    for (a, b, _), row in form.aa_row.items():
        if keep[a] or keep[b]:
            total += float(y[row])
    legs = keep[cands.workload]
    return total + float(np.minimum(rc[legs], 0.0).sum())


def solve_scalable(
    cands: Candidates,
    meta: Meta,
    *,
    time_limit_s: float = 25.0,
    per_workload: int = 6,
    add_per_round: int = 12,
    max_rounds: int = 12,
    neighbourhood: int = 400,
) -> Solution:
    """Column generation on the LP, fix-and-repair rounding, local search; gap vs the LP bound.

    Lexicographic when capacity forces workloads out: the bound reported is then the LP bound
    on the cost of placing exactly the workloads placed (the rest are listed as unplaced).
    """
    started = time.perf_counter()
    deadline = started + time_limit_s

    def remaining() -> float:
        return max(0.5, deadline - time.perf_counter())

    scope = _scope(cands, meta)
    if len(scope) == 0:
        return _nothing_to_decide("lp-cg+fix+local", "done")
    # a quick greedy (most constrained first) gives every placeable workload a column that fits,
    # so the first LP is near the real costs rather than paying unplaced penalties
    seed = _State(cands, meta)
    counts = np.diff(cands.start)
    for w in sorted(scope.tolist(), key=lambda v: int(counts[v])):
        found = seed.greedy(w)
        if found is not None:
            seed.place(w, found)
    seeded = np.array([leg for legs in seed.picks.values() for leg in legs], dtype=np.int64)
    relaxed = _column_generation(
        cands,
        meta,
        scope,
        np.union1d(_initial_columns(cands, meta, scope, per_workload), seeded),
        elastic=True,
        deadline=started + 0.55 * time_limit_s,
        hard_deadline=deadline,
        add_per_round=add_per_round,
        max_rounds=max_rounds,
    )
    form, result, cols, rc = relaxed.form, relaxed.result, relaxed.cols, relaxed.rc
    x = result.values[: len(cols)]
    u = result.values[len(cols) :]
    state = _State(cands, meta)
    w_of = cands.workload[cols]
    fractional_x = (x > INTEGRAL) & (x < 1 - INTEGRAL)
    frac_u = (u > INTEGRAL) & (u < 1 - INTEGRAL)
    fractional = np.zeros(len(cands.needs), dtype=bool)
    fractional[w_of[fractional_x]] = True
    fractional[scope[frac_u]] = True
    fractional[scope[(u >= 1 - INTEGRAL)]] = True  # left out by the LP: another chance below
    # widen the sub-problem with the workloads sitting on the pools they contend for, so the
    # sub-MILP can move those too (bounded, so it stays small)
    usage = np.bincount(
        cands.slot[cols],
        weights=np.where(np.isfinite(cands.devices[cols]), cands.devices[cols], 0.0) * x,
        minlength=len(meta.free),
    )
    hot = usage >= meta.free - 1e-6
    for slot, row in form.cap_row.items():
        hot[slot] |= result.row_dual[row] < -1e-9
    if hot.any() and fractional.any():
        touched = np.zeros(len(meta.free), dtype=bool)
        touched[cands.slot[cols[fractional[w_of]]]] = True
        hot &= touched
        sitting = (x > INTEGRAL) & hot[cands.slot[cols]] & ~fractional[w_of]
        neighbours = np.unique(w_of[sitting])
        if len(neighbours) > neighbourhood:
            neighbours = np.random.default_rng(0).choice(neighbours, neighbourhood, replace=False)
        fractional[neighbours] = True
    for w in scope.tolist():
        if not fractional[w]:
            legs = cols[(w_of == w) & (x >= 1 - INTEGRAL)].tolist()
            if state.valid(w, legs):
                state.place(w, legs)
            else:
                fractional[w] = True
    open_workloads = np.nonzero(fractional)[0].astype(np.int64)
    # LP-guided greedy: each open workload takes the legs the LP liked best that still fit,
    # the workloads the LP was surest about first
    lp_value = np.zeros(cands.count)
    lp_value[cols] = x
    confidence = np.zeros(len(cands.needs))
    np.maximum.at(confidence, w_of, x)
    for w in sorted(open_workloads.tolist(), key=lambda v: -confidence[v]):
        found = state.greedy(w, lp_value)
        if found is not None:
            state.place(w, found)
    for w in scope.tolist():
        if w not in state.picks:
            found = state.greedy(w)
            if found is not None:
                state.place(w, found)
            elif time.perf_counter() < deadline:
                state.eject(w)
    sub_improved = False
    # the polish may also move whoever sits on the pools the still-unplaced workloads need
    left = [w for w in scope.tolist() if w not in state.picks]
    if left:
        wanted = np.zeros(len(meta.free), dtype=bool)
        for w in left:
            wanted[cands.slot[cands.legs_of(w)]] = True
        sitters = sorted(
            {v for slot in np.nonzero(wanted)[0].tolist() for v in state.occupants.get(slot, ())}
        )[:neighbourhood]
        open_workloads = np.union1d(open_workloads, np.array(left + sitters, dtype=np.int64))
    if len(open_workloads) and remaining() > 1.0:
        polish_s = min(remaining() * 0.25, 6.0)
        sub_improved = _polish(
            state,
            cands,
            meta,
            cols,
            rc,
            open_workloads,
            per_workload,
            add_per_round,
            polish_s,
        )
    for w in scope.tolist():
        if w not in state.picks and time.perf_counter() < deadline:
            state.eject(w)
    moves = 0
    reserve = 0.0 if relaxed.converged and len(state.picks) == len(scope) else 0.2 * time_limit_s
    for _ in range(4):
        improved = False
        for w in list(state.picks):
            if time.perf_counter() > deadline - reserve:
                break
            while state.improve(w):
                improved = True
                moves += 1
        if not improved:
            break
    chosen = np.array(sorted(leg for legs in state.picks.values() for leg in legs), dtype=np.int64)
    unplaced = np.array([w for w in scope.tolist() if w not in state.picks], dtype=np.int64)
    objective = float(cands.objective[chosen].sum())
    bound = relaxed.bound
    bound_rounds = 0
    if len(unplaced):
        # lexicographic: bound the cost of placing exactly the workloads placed — at once from
        # the elastic LP's duals, then by column generation on that LP if time is left
        placed = np.array(sorted(state.picks), dtype=np.int64)
        bound = _placed_set_bound(relaxed, cands, meta, placed)
        if deadline - time.perf_counter() > 1.0:
            start_cols = np.union1d(cols[np.isin(w_of, placed)], chosen)
            exact_set = _column_generation(
                cands,
                meta,
                placed,
                start_cols,
                elastic=False,
                deadline=deadline,
                hard_deadline=deadline,
                add_per_round=add_per_round,
                max_rounds=max_rounds,
            )
            bound = max(bound, exact_set.bound)
            bound_rounds = exact_set.rounds
    else:
        bound = relaxed.bound
        if not relaxed.converged and relaxed.result.optimal and deadline - time.perf_counter() > 1:
            # spend what is left on the bound: carry on pricing where the LP stopped
            more = _column_generation(
                cands,
                meta,
                scope,
                cols,
                elastic=True,
                deadline=deadline,
                hard_deadline=deadline,
                add_per_round=add_per_round,
                max_rounds=max_rounds + 8,
                resume=relaxed,
            )
            bound = max(bound, more.bound)
            bound_rounds = more.rounds - relaxed.rounds
    return Solution(
        chosen=chosen,
        unplaced=unplaced,
        objective=objective,
        bound=min(bound, objective),
        method="lp-cg+fix+local",
        status="time limit" if time.perf_counter() > deadline else "done",
        seconds=time.perf_counter() - started,
        stats={
            "lp_rounds": float(relaxed.rounds),
            "lp_seconds": relaxed.seconds,
            "lp_columns": float(len(cols)),
            "fractional_workloads": float(len(open_workloads)),
            "sub_mip_improved": 1.0 if sub_improved else 0.0,
            "local_moves": float(moves),
            "bound_lp_rounds": float(bound_rounds),
        },
    )
