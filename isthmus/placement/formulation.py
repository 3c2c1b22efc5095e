"""The placement MILP as HiGHS arrays, built over any subset of the candidate legs.

One builder serves the exact solve (all legs), the restricted LPs of column generation (a few
legs per workload), and the sub-MIP of the scalable method (the fractional workloads, on the
capacity the others left). Rows are only emitted where they can bind — a pool whose selected
legs cannot overfill it, a budget the priciest legs cannot break — and a dual of 0 is exact for
a row that is left out, so pricing stays valid (see ``reduced_costs``).

Duals follow HiGHS's convention for a minimisation: ``reduced cost = c - A^T y`` with ``y >= 0``
on ``>=`` rows and ``y <= 0`` on ``<=`` rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import highspy
import numpy as np
import numpy.typing as npt

from isthmus.placement.legs import Candidates

__all__ = ["Formulation", "Meta", "Solution", "build", "run"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

INF = math.inf


@dataclass(frozen=True)
class Meta:
    """Per-workload constants of the formulation."""

    legs: IntArray
    """n_w = N + k legs."""
    cover_required: IntArray
    """Legs each demand metro needs within its SLO (0 = no cover rows)."""
    metros: IntArray
    budget: FloatArray
    """NaN = no budget."""
    anti_affinity: tuple[tuple[int, int], ...]
    free: FloatArray
    """Free devices per slot (inf for provider APIs)."""
    n_domains: int
    penalty: FloatArray
    """Objective charged if a workload is left unplaced (elastic rows keep every model
    feasible): ten times its priciest legs, so placing it always wins over leaving it out."""


@dataclass
class Formulation:
    cols: IntArray
    scope: IntArray
    num_rows: int
    assign_row: IntArray
    cap_row: dict[int, int]
    budget_row: dict[int, int]
    domain_row: dict[tuple[int, int], int]
    cover_row: dict[tuple[int, int], int]
    aa_row: dict[tuple[int, int, int], int]
    lp: highspy.HighsLp = field(repr=False)


@dataclass
class Solution:
    """What a solver returns: chosen legs, unplaced workloads, objective and bound."""

    chosen: IntArray
    unplaced: IntArray
    objective: float
    bound: float
    method: str
    status: str
    seconds: float
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def gap(self) -> float:
        """``(objective - bound) / bound``; infinite when no bound was proven."""
        if not math.isfinite(self.bound):
            return math.inf
        if self.objective <= 0:
            return 0.0
        return max(0.0, (self.objective - self.bound) / max(abs(self.bound), 1e-9))


def build(
    cands: Candidates,
    meta: Meta,
    cols: IntArray,
    scope: IntArray,
    free: FloatArray | None = None,
    *,
    elastic: bool = True,
    all_rows: bool = False,
) -> Formulation:
    """The MILP over legs ``cols`` for workloads ``scope`` (every leg in ``cols`` must belong to
    a workload in ``scope``). ``free`` overrides the free devices per slot; without
    ``elastic`` every workload in scope must be placed (no unplaced columns). With
    ``all_rows`` the capacity, budget and anti-affinity rows are those any leg of the scope could
    need, so columns can be added later without new rows (``Master``)."""
    free = meta.free if free is None else free
    n_x = len(cols)
    n_w = len(scope)
    local = np.full(len(cands.needs), -1, dtype=np.int64)
    local[scope] = np.arange(n_w)
    w_of = cands.workload[cols]
    rows_i: list[IntArray] = []
    cols_j: list[IntArray] = []
    vals: list[FloatArray] = []
    lower: list[float] = []
    upper: list[float] = []

    def add_rows(count: int, lo: float, hi: float) -> int:
        first = len(lower)
        lower.extend([lo] * count)
        upper.extend([hi] * count)
        return first

    legs = meta.legs[scope].astype(np.float64)
    first = len(lower)
    lower.extend(legs.tolist())
    upper.extend(legs.tolist())
    assign_row = np.arange(first, first + n_w)
    rows_i.append(local[w_of])
    cols_j.append(np.arange(n_x))
    vals.append(np.ones(n_x))
    n_u = n_w if elastic else 0
    if elastic:
        rows_i.append(np.arange(n_w))
        cols_j.append(n_x + np.arange(n_w))
        vals.append(legs)

    # capacity: pools the selected legs (or, with all_rows, any leg of the scope) could overfill
    slots = cands.slot[cols]
    devices = cands.devices[cols]
    finite = np.isfinite(free[slots]) & (devices > 0)
    cap_row: dict[int, int] = {}
    uniq: IntArray
    demand: FloatArray
    if all_rows:
        every = np.nonzero(local[cands.workload] >= 0)[0]
        usable = np.isfinite(free[cands.slot[every]]) & (cands.devices[every] > 0)
        every = every[usable]
        pool_demand = np.bincount(
            cands.slot[every],
            weights=np.where(np.isfinite(cands.devices[every]), cands.devices[every], 1e18),
            minlength=len(free),
        )
        uniq = np.nonzero(pool_demand > 0)[0]
        demand = pool_demand[uniq].astype(np.float64)
    elif finite.any():
        uniq, inverse = np.unique(slots[finite], return_inverse=True)
        demand = np.bincount(inverse, weights=devices[finite], minlength=len(uniq)).astype(
            np.float64
        )
    else:
        uniq = np.zeros(0, dtype=np.int64)
        demand = np.zeros(0)
    if len(uniq):
        binding = demand > free[uniq] + 1e-9
        if binding.any():
            chosen = np.nonzero(binding)[0]
            first = len(lower)
            lower.extend([-INF] * len(chosen))
            upper.extend(free[uniq[chosen]].tolist())
            cap_row = {int(uniq[c]): first + i for i, c in enumerate(chosen.tolist())}
            row_of_slot = np.full(len(free), -1, dtype=np.int64)
            row_of_slot[uniq[chosen]] = first + np.arange(len(chosen))
            idx = np.nonzero(finite)[0]
            leg_rows = row_of_slot[slots[idx]]
            keep = leg_rows >= 0
            rows_i.append(leg_rows[keep])
            cols_j.append(idx[keep])
            vals.append(devices[idx[keep]])

    # budgets that the priciest selected legs could break
    budget_row: dict[int, int] = {}
    budgets = meta.budget[scope]
    for b in np.nonzero(np.isfinite(budgets))[0].tolist():
        wid = int(scope[b])
        mine = np.nonzero(w_of == wid)[0]
        pool = cands.cost[cands.legs_of(wid)] if all_rows else cands.cost[cols[mine]]
        priciest = np.sort(pool)[::-1][: int(meta.legs[wid])].sum()
        if priciest <= budgets[b] + 1e-9:
            continue
        row = add_rows(1, -INF, float(budgets[b]))
        budget_row[wid] = row
        rows_i.append(np.full(len(mine), row))
        cols_j.append(mine)
        vals.append(cands.cost[cols[mine]])

    # one leg per failure domain (multi-leg workloads), and latency cover per metro
    domain_row: dict[tuple[int, int], int] = {}
    cover_row: dict[tuple[int, int], int] = {}
    multi = np.nonzero(meta.legs[w_of] > 1)[0]
    if len(multi):
        key = w_of[multi] * meta.n_domains + cands.domain[cols[multi]]
        uniq, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
        grouped = counts >= 2
        if grouped.any():
            row_of = np.full(len(uniq), -1, dtype=np.int64)
            chosen = np.nonzero(grouped)[0]
            first = add_rows(len(chosen), -INF, 1.0)
            row_of[chosen] = first + np.arange(len(chosen))
            for c in chosen:
                domain_row[(int(uniq[c] // meta.n_domains), int(uniq[c] % meta.n_domains))] = int(
                    row_of[c]
                )
            leg_rows = row_of[inverse]
            keep = leg_rows >= 0
            rows_i.append(leg_rows[keep])
            cols_j.append(multi[keep])
            vals.append(np.ones(int(keep.sum())))
    for i, w in enumerate(scope.tolist()):
        need_cover = int(meta.cover_required[w])
        if meta.legs[w] <= 1 or need_cover == 0:
            continue
        mine = np.nonzero(w_of == w)[0]
        bits = cands.cover[cols[mine]]
        for m in range(int(meta.metros[w])):
            row = add_rows(1, float(need_cover), INF)
            cover_row[(w, m)] = row
            hit = mine[((bits >> m) & 1).astype(bool)]
            if elastic:
                rows_i.append(np.full(len(hit) + 1, row))
                cols_j.append(np.append(hit, n_x + i))
                vals.append(np.append(np.ones(len(hit)), float(need_cover)))
            else:
                rows_i.append(np.full(len(hit), row))
                cols_j.append(hit)
                vals.append(np.ones(len(hit)))

    # anti-affinity: the two workloads share no failure domain
    aa_row: dict[tuple[int, int, int], int] = {}
    for a, b in meta.anti_affinity:
        if local[a] < 0 or local[b] < 0:
            continue
        mine_a = np.nonzero(w_of == a)[0]
        mine_b = np.nonzero(w_of == b)[0]
        dom_a = cands.domain[cols[mine_a]]
        dom_b = cands.domain[cols[mine_b]]
        shared = np.intersect1d(dom_a, dom_b)
        if all_rows:
            shared = np.intersect1d(cands.domain[cands.legs_of(a)], cands.domain[cands.legs_of(b)])
        for d in shared.tolist():
            row = add_rows(1, -INF, 1.0)
            aa_row[(a, b, int(d))] = row
            members = np.concatenate([mine_a[dom_a == d], mine_b[dom_b == d]])
            rows_i.append(np.full(len(members), row))
            cols_j.append(members)
            vals.append(np.ones(len(members)))

    coo_r = np.concatenate(rows_i).astype(np.int64)
    coo_c = np.concatenate(cols_j).astype(np.int64)
    coo_v = np.concatenate(vals).astype(np.float64)
    if len(coo_r) and coo_r.min() < 0:  # HiGHS would crash on it: fail loudly instead
        raise ValueError("a leg outside the scope reached the formulation")
    order = np.lexsort((coo_r, coo_c))
    coo_r, coo_c, coo_v = coo_r[order], coo_c[order], coo_v[order]
    n_cols = n_x + n_u
    starts = np.searchsorted(coo_c, np.arange(n_cols + 1)).astype(np.int32)

    lp = highspy.HighsLp()
    lp.num_col_ = n_cols
    lp.num_row_ = len(lower)
    lp.col_cost_ = np.concatenate([cands.objective[cols], meta.penalty[scope][:n_u]])
    lp.col_lower_ = np.zeros(n_cols)
    lp.col_upper_ = np.ones(n_cols)
    lp.row_lower_ = np.array(lower, dtype=np.float64)
    lp.row_upper_ = np.array(upper, dtype=np.float64)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = starts
    lp.a_matrix_.index_ = coo_r.astype(np.int32)
    lp.a_matrix_.value_ = coo_v
    return Formulation(
        cols=cols,
        scope=scope,
        num_rows=len(lower),
        assign_row=assign_row,
        cap_row=cap_row,
        budget_row=budget_row,
        domain_row=domain_row,
        cover_row=cover_row,
        aa_row=aa_row,
        lp=lp,
    )


@dataclass
class RunResult:
    status: str
    optimal: bool
    values: FloatArray
    row_dual: FloatArray
    objective: float
    bound: float


def run(
    form: Formulation,
    *,
    integral: bool,
    time_limit_s: float,
    mip_rel_gap: float = 1e-6,
    threads: int = 1,
    start: FloatArray | None = None,
) -> RunResult:
    """Solve ``form`` with HiGHS (as an LP, or as a MILP with binary columns, optionally
    from a feasible ``start``)."""
    h = highspy.Highs()  # type: ignore[no-untyped-call]
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", max(0.05, float(time_limit_s)))
    h.setOptionValue("threads", threads)
    if integral:
        h.setOptionValue("mip_rel_gap", mip_rel_gap)
        form.lp.integrality_ = [highspy.HighsVarType.kInteger] * form.lp.num_col_
    else:
        form.lp.integrality_ = []
    h.passModel(form.lp)
    if start is not None:
        incumbent = highspy.HighsSolution()
        incumbent.col_value = start.tolist()
        incumbent.value_valid = True
        h.setSolution(incumbent)
    h.run()
    status = h.getModelStatus()
    info = h.getInfo()
    solution = h.getSolution()
    # a MILP stopped before its first incumbent may still hold relaxation values: never use them
    has_values = bool(solution.value_valid) and (
        not integral
        or int(info.primal_solution_status) == int(highspy.SolutionStatus.kSolutionStatusFeasible)
    )
    values = np.asarray(solution.col_value, dtype=np.float64) if has_values else np.zeros(0)
    duals = (
        np.asarray(solution.row_dual, dtype=np.float64)
        if solution.dual_valid
        else np.zeros(form.num_rows)
    )
    objective = float(info.objective_function_value) if has_values else math.inf
    bound = float(info.mip_dual_bound) if integral else objective
    name = h.modelStatusToString(status)
    optimal = status == highspy.HighsModelStatus.kOptimal
    return RunResult(name, optimal, values, duals, objective, bound)


def reduced_costs(
    cands: Candidates, meta: Meta, form: Formulation, duals: FloatArray, legs: IntArray
) -> FloatArray:
    """``c - A^T y`` for any legs, including legs outside ``form`` (rows they would join but
    that ``form`` left out are non-binding there, so their dual is 0)."""
    w = cands.workload[legs]
    rc = cands.objective[legs].copy()
    y_assign = np.zeros(len(cands.needs))
    y_assign[form.scope] = duals[form.assign_row]
    rc -= y_assign[w]
    if form.cap_row:
        y_cap = np.zeros(int(meta.free.shape[0]))
        for slot, row in form.cap_row.items():
            y_cap[slot] = duals[row]
        rc -= y_cap[cands.slot[legs]] * cands.devices[legs]
    if form.budget_row:
        y_budget = np.zeros(len(cands.needs))
        for wid, row in form.budget_row.items():
            y_budget[wid] = duals[row]
        rc -= y_budget[w] * cands.cost[legs]
    keyed: dict[int, float] = {}
    for (wid, d), row in form.domain_row.items():
        keyed[wid * meta.n_domains + d] = keyed.get(wid * meta.n_domains + d, 0.0) + duals[row]
    for (a, b, d), row in form.aa_row.items():
        for wid in (a, b):
            k = wid * meta.n_domains + d
            keyed[k] = keyed.get(k, 0.0) + duals[row]
    if keyed:
        keys = np.array(sorted(keyed), dtype=np.int64)
        values = np.array([keyed[k] for k in keys.tolist()])
        probe = w * meta.n_domains + cands.domain[legs]
        pos = np.clip(np.searchsorted(keys, probe), 0, len(keys) - 1)
        hit = keys[pos] == probe
        rc -= np.where(hit, values[pos], 0.0)
    if form.cover_row:
        top = max(m for _, m in form.cover_row) + 1
        y_cover = np.zeros((len(cands.needs), top))
        for (wid, m), row in form.cover_row.items():
            y_cover[wid, m] = duals[row]
        bits = cands.cover[legs]
        for m in range(top):
            rc -= ((bits >> m) & 1) * y_cover[w, m]
    return rc


class Master:
    """A restricted master LP that grows by columns and keeps HiGHS's basis between solves.

    Built with ``all_rows`` so new legs only need the rows already there, except "one leg per
    failure domain" rows, which appear when a workload's second leg in a domain arrives.
    """

    def __init__(
        self,
        cands: Candidates,
        meta: Meta,
        cols: IntArray,
        scope: IntArray,
        *,
        elastic: bool,
        threads: int = 1,
    ) -> None:
        self.cands = cands
        self.meta = meta
        self.elastic = elastic
        self.form = build(cands, meta, cols, scope, elastic=elastic, all_rows=True)
        self.legs: list[int] = cols.tolist()
        self.n_x0 = len(cols)
        self.n_u = len(scope) if elastic else 0
        self.positions: dict[int, int] = {leg: i for i, leg in enumerate(self.legs)}
        self.group: dict[tuple[int, int], list[int]] = {}
        multi = meta.legs[cands.workload[cols]] > 1
        for i in np.nonzero(multi)[0].tolist():
            leg = int(cols[i])
            key = (int(cands.workload[leg]), int(cands.domain[leg]))
            self.group.setdefault(key, []).append(leg)
        self.local = np.full(len(cands.needs), -1, dtype=np.int64)
        self.local[scope] = np.arange(len(scope))
        self.h = highspy.Highs()  # type: ignore[no-untyped-call]
        self.h.setOptionValue("output_flag", False)
        self.h.setOptionValue("threads", threads)
        self.form.lp.integrality_ = []
        self.h.passModel(self.form.lp)
        self.num_rows = self.form.num_rows
        self.aa_by_workload: dict[int, list[tuple[int, int]]] = {}
        for (a, b, d), row in self.form.aa_row.items():
            self.aa_by_workload.setdefault(a, []).append((d, row))
            self.aa_by_workload.setdefault(b, []).append((d, row))

    def column(self, leg: int) -> int:
        """HiGHS column of ``leg`` (the unplaced columns follow the first batch)."""
        i = self.positions[leg]
        return i if i < self.n_x0 else i + self.n_u

    def _row_maps(self) -> None:
        """Array lookups from workload, slot and (workload, metro) to their rows."""
        c, form = self.cands, self.form
        n_w = len(c.needs)
        self.assign_of = np.full(n_w, -1, dtype=np.int64)
        self.assign_of[form.scope] = form.assign_row
        self.cap_of = np.full(len(self.meta.free), -1, dtype=np.int64)
        for slot, row in form.cap_row.items():
            self.cap_of[slot] = row
        self.budget_of = np.full(n_w, -1, dtype=np.int64)
        for w, row in form.budget_row.items():
            self.budget_of[w] = row
        top = max((m for _, m in form.cover_row), default=-1) + 1
        self.cover_of = np.full((n_w, max(top, 1)), -1, dtype=np.int64)
        for (w, m), row in form.cover_row.items():
            self.cover_of[w, m] = row

    def add(self, legs: IntArray) -> None:
        """Append ``legs`` as columns (and any "one leg per domain" rows they now need)."""
        c, meta, form = self.cands, self.meta, self.form
        if not hasattr(self, "assign_of"):
            self._row_maps()
        fresh_list = [int(leg) for leg in legs.tolist() if int(leg) not in self.positions]
        if not fresh_list:
            return
        fresh = np.array(fresh_list, dtype=np.int64)
        w_of = c.workload[fresh]
        for leg in fresh[meta.legs[w_of] > 1].tolist():
            key = (int(c.workload[leg]), int(c.domain[leg]))
            members = self.group.setdefault(key, [])
            if len(members) == 1 and key not in form.domain_row:
                self.h.addRow(-INF, 1.0, 0, np.zeros(0, dtype=np.int32), np.zeros(0))
                row = self.num_rows
                self.num_rows += 1
                form.domain_row[key] = row
                if members[0] in self.positions:
                    self.h.changeCoeff(row, self.column(members[0]), 1.0)
            members.append(leg)
        n = len(fresh)
        local = np.arange(n)
        rows = [self.assign_of[w_of]]
        cols_ = [local]
        vals = [np.ones(n)]
        cap = self.cap_of[c.slot[fresh]]
        hit = cap >= 0
        rows.append(cap[hit])
        cols_.append(local[hit])
        vals.append(c.devices[fresh][hit])
        budget = self.budget_of[w_of]
        hit = budget >= 0
        rows.append(budget[hit])
        cols_.append(local[hit])
        vals.append(c.cost[fresh][hit])
        bits = c.cover[fresh]
        for m in range(self.cover_of.shape[1]):
            row_m = self.cover_of[w_of, m]
            hit = (row_m >= 0) & (((bits >> m) & 1) == 1)
            rows.append(row_m[hit])
            cols_.append(local[hit])
            vals.append(np.ones(int(hit.sum())))
        extra_r: list[int] = []
        extra_c: list[int] = []
        for i in np.nonzero(meta.legs[w_of] > 1)[0].tolist():
            found = form.domain_row.get((int(w_of[i]), int(c.domain[fresh[i]])))
            if found is not None:
                extra_r.append(found)
                extra_c.append(i)
        if self.aa_by_workload:
            for i, w in enumerate(w_of.tolist()):
                for d, row in self.aa_by_workload.get(w, ()):
                    if d == int(c.domain[fresh[i]]):
                        extra_r.append(row)
                        extra_c.append(i)
        rows.append(np.array(extra_r, dtype=np.int64))
        cols_.append(np.array(extra_c, dtype=np.int64))
        vals.append(np.ones(len(extra_r)))
        r = np.concatenate(rows)
        k = np.concatenate(cols_)
        v = np.concatenate(vals)
        order = np.lexsort((r, k))
        r, k, v = r[order], k[order], v[order]
        starts = np.searchsorted(k, np.arange(n)).astype(np.int32)
        self.h.addCols(
            n,
            c.objective[fresh],
            np.zeros(n),
            np.ones(n),
            len(r),
            starts,
            r.astype(np.int32),
            v.astype(np.float64),
        )
        base = len(self.legs)
        for i, leg in enumerate(fresh_list):
            self.positions[leg] = base + i
        self.legs.extend(fresh_list)
        form.cols = np.array(self.legs, dtype=np.int64)

    def solve(self, time_limit_s: float) -> RunResult:
        h = self.h
        h.setOptionValue("time_limit", max(0.05, float(time_limit_s)))
        h.run()
        status = h.getModelStatus()
        solution = h.getSolution()
        values = np.asarray(solution.col_value, dtype=np.float64)
        n_x = len(self.legs)
        if len(values):
            # reorder to [x in self.legs order..., u...] like ``build`` lays them out
            x = np.concatenate([values[: self.n_x0], values[self.n_x0 + self.n_u :]])
            u = values[self.n_x0 : self.n_x0 + self.n_u]
            values = np.concatenate([x, u])
        duals = (
            np.asarray(solution.row_dual, dtype=np.float64)
            if solution.dual_valid
            else np.zeros(self.num_rows)
        )
        objective = float(h.getInfo().objective_function_value) if len(values) else math.inf
        del n_x
        optimal = status == highspy.HighsModelStatus.kOptimal
        return RunResult(
            h.modelStatusToString(status), optimal, values, duals, objective, objective
        )
