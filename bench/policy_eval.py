"""Policy evaluation per decision and catalog load time on a 300-site fabric.

Prints a table and writes bench/results/policy_eval.json. Target: <= 5 us per evaluation.
The baseline, measured in the same run, is the clause-by-clause reference evaluator
(``isthmus.policy.explain``) that the compiled tables must agree with.

    .venv/bin/python bench/policy_eval.py [--sites 300] [--queries 20000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path

import yaml

from isthmus.fabric.loader import load_fabric
from isthmus.fabric.synth import synth_fabric
from isthmus.network.paths import Network
from isthmus.policy import compile_policy, explain

RESULTS = Path(__file__).parent / "results"


def timed(fn, repeats: int) -> list[float]:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sites", type=int, default=300)
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    spec = synth_fabric(args.sites)
    text = yaml.safe_dump(spec.model_dump(mode="json", exclude_defaults=True), sort_keys=False)
    path = RESULTS / f"synthetic-{args.sites}.yaml"
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    load_s = timed(lambda: load_fabric(path), args.repeats)
    fabric = load_fabric(path)
    path.unlink()
    compile_s = timed(lambda: compile_policy(fabric), args.repeats)
    policy = compile_policy(fabric)
    network = Network(fabric)

    rng = random.Random(1)
    classes = ["public", "internal", "pii", "phi", "restricted", "unknown"]
    sites = list(fabric.sites)
    metros = list(fabric.metros)
    models = [*fabric.models, None]
    queries = []
    for _ in range(args.queries):
        site = rng.choice(sites)
        net = network.path(rng.choice(metros), site) if rng.random() < 0.8 else None
        queries.append((rng.choice(classes), site, net, rng.choice(models)))

    def compiled_pass() -> None:
        evaluate = policy.evaluate
        for data_class, site, net, model in queries:
            evaluate(data_class, site, net, model)

    def reference_pass() -> None:
        for data_class, site, net, model in queries[: len(queries) // 10]:
            explain(fabric, data_class, site, net, model)

    cold_policy = compile_policy(fabric)
    start = time.perf_counter()
    for data_class, site, net, model in queries:
        cold_policy.evaluate(data_class, site, net, model)
    cold_us = (time.perf_counter() - start) / len(queries) * 1e6
    agree = sum(
        policy.evaluate(c, s, p, m) == explain(fabric, c, s, p, m)[0]
        for c, s, p, m in queries[:2000]
    )
    warm = [t / len(queries) * 1e6 for t in timed(compiled_pass, args.repeats)]
    reference = [t / (len(queries) // 10) * 1e6 for t in timed(reference_pass, args.repeats)]
    allowed = sum(policy.evaluate(c, s, p, m).allowed for c, s, p, m in queries)

    result = {
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
        },
        "fabric": {
            "sites": len(fabric.sites),
            "metros": len(fabric.metros),
            "endpoints": len(fabric.endpoints),
            "policies": len(fabric.policies),
            "yaml_bytes": len(text.encode()),
        },
        "catalog_load_ms_median": statistics.median(load_s) * 1e3,
        "policy_compile_ms_median": statistics.median(compile_s) * 1e3,
        "evaluate_us_median": statistics.median(warm),
        "evaluate_us_first_pass": cold_us,
        "reference_explain_us_median": statistics.median(reference),
        "speedup_vs_reference": statistics.median(reference) / statistics.median(warm),
        "queries": len(queries),
        "allowed_fraction": allowed / len(queries),
        "agreement_with_reference": f"{agree}/2000",
        "target_us": 5.0,
    }
    (RESULTS / "policy_eval.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"fabric: {len(fabric.sites)} sites, {len(fabric.metros)} metros, "
        f"{len(fabric.endpoints)} endpoints, {result['fabric']['yaml_bytes']:,} bytes of YAML"
    )
    print(f"{'measure':44} {'median':>12}")
    print(
        f"{'catalog load (read, validate, index)':44} {result['catalog_load_ms_median']:>9.1f} ms"
    )
    print(f"{'policy compile':44} {result['policy_compile_ms_median']:>9.1f} ms")
    print(f"{'evaluate, steady state (compiled)':44} {result['evaluate_us_median']:>9.2f} us")
    print(f"{'evaluate, first pass (memo misses)':44} {cold_us:>9.2f} us")
    print(
        f"{'baseline: reference clause-by-clause':44} {result['reference_explain_us_median']:>9.2f} us"
    )
    print(
        f"speedup over reference: {result['speedup_vs_reference']:.0f}x; "
        f"agreement {result['agreement_with_reference']}; target <= 5 us: "
        f"{'met' if result['evaluate_us_median'] <= 5 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
