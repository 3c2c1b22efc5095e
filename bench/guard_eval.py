"""Guard evaluation on held-out public attack data: detection, evasion, PII, latency.

    .venv/bin/python bench/guard_eval.py [--data data/security] [--latency-prompts 300]

Everything is measured on the *validation* split (``isthmus.guard.corpus``: 30% of groups,
seeded by hash; the classifier never saw it). In one run, for the same examples:

1. Injection / jailbreak, input direction: JailbreakBench prompts (per method) against XSTest
   safe + WildGuard benign prompts. Three detectors: the rules alone, the classifier alone,
   and rules + classifier as the guard combines them (noisy-OR, acted on at score >= 0.5).
   Recall, precision, false-positive rate at the operating point, and recall at 1% FPR (the
   threshold on the combined score that lets at most 1% of the benign prompts through).
2. Indirect injection, context direction: validation BIPIA attacks planted in validation BIPIA
   contexts (e-mail, table, code) against the clean validation contexts; same three detectors.
3. Evasion: the validation attacks with zero-width characters between letters, tag characters
   between letters, and Cyrillic/Greek homoglyphs for half the letters (seeded); detection
   rate of rules + classifier on the normalised visible text, as a fraction of the plain rate
   (the separate tag-smuggling finding is reported apart, not counted).
4. PII: Presidio synthetic sentences (1,000), structured entities only (card, IBAN, e-mail,
   phone, SSN, IP); a prediction is a true positive if it overlaps an unmatched gold span of
   the same type; exact-span F1 too. The rules were written while looking at this set (there
   is no held-out PII set): read these figures as an upper bound.
5. Latency: the whole input pipeline (``Guard.inspect_request`` on one 512-token user message:
   normalisation, rules, classifier, PII, secrets, URLs, caps, verdicts), P50/P95 over
   ``--latency-prompts`` prompts built from validation texts, after a warm-up, one thread.

Writes ``bench/results/guard_eval.json`` and prints a table beside the published anchors.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from isthmus.engines.tokens import count_tokens  # noqa: E402
from isthmus.guard import Guard, GuardPolicy, InspectionContext  # noqa: E402
from isthmus.guard.classifier import ContextClassifier, InputClassifier  # noqa: E402
from isthmus.guard.corpus import default_data_dir, load_corpus, planted_contexts  # noqa: E402
from isthmus.guard.decide import ATTACK_FAMILIES  # noqa: E402
from isthmus.guard.findings import Finding  # noqa: E402
from isthmus.guard.normalize import HOMOGLYPHS, normalize  # noqa: E402
from isthmus.guard.pii import PiiInspector  # noqa: E402
from isthmus.guard.rules import IndirectInjectionRules, InjectionRules  # noqa: E402

OPERATING = 0.5
ANCHORS = {
    "llm_guard_injection_cpu_ms": "104–213 ms per prompt (LLM Guard prompt-injection scanner, CPU)",
    "prompt_guard_2_86m": "recall 97.5% at 1% FPR (Llama Prompt Guard 2 86M, GPU, 92 ms)",
}
PII_TYPES = {
    "CREDIT_CARD": "credit_card",
    "IBAN_CODE": "iban",
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "US_SSN": "us_ssn",
    "IP_ADDRESS": "ip_address",
}

Scorer = Callable[[str], float]


def noisy_or(findings: Sequence[Finding]) -> float:
    miss = 1.0
    for finding in findings:
        if finding.family in ATTACK_FAMILIES:
            miss *= 1.0 - finding.score
    return 1.0 - miss


def scorers(direction: str) -> dict[str, Scorer]:
    """Score in [0, 1] of each detector on a text (normalised first, as the pipeline does)."""
    if direction == "input":
        rules, model = InjectionRules(), InputClassifier()
    else:
        rules, model = IndirectInjectionRules(), ContextClassifier()
    context = InspectionContext(direction=direction)  # type: ignore[arg-type]

    def visible(findings: Sequence[Finding]) -> list[Finding]:
        return list(findings)

    def rules_only(text: str) -> float:
        return noisy_or(visible(rules.inspect(normalize(text).text, context)))

    def model_only(text: str) -> float:
        return noisy_or(visible(model.inspect(normalize(text).text, context)))

    def combined(text: str) -> float:
        view = normalize(text).text
        return noisy_or([*rules.inspect(view, context), *model.inspect(view, context)])

    return {"rules": rules_only, "classifier": model_only, "rules+classifier": combined}


def rates(pos: np.ndarray, neg: np.ndarray, threshold: float = OPERATING) -> dict[str, float]:
    tp = int((pos >= threshold).sum())
    fp = int((neg >= threshold).sum())
    recall = tp / len(pos) if len(pos) else 0.0
    precision = tp / (tp + fp) if tp + fp else 0.0
    return {
        "recall": round(recall, 4),
        "precision": round(precision, 4),
        "fpr": round(fp / len(neg), 4) if len(neg) else 0.0,
        "tp": tp,
        "fp": fp,
    }


def recall_at_fpr(pos: np.ndarray, neg: np.ndarray, fpr: float = 0.01) -> dict[str, float]:
    """Recall with a threshold letting at most ``fpr`` of ``neg`` score at or above it."""
    ordered = np.sort(neg)[::-1]
    allowed = int(np.floor(fpr * len(ordered)))
    # smallest threshold above the (allowed+1)-th highest benign score
    ceiling = ordered[allowed] if allowed < len(ordered) else -np.inf
    threshold = np.nextafter(ceiling, np.inf)
    return {
        "recall": round(float((pos >= threshold).mean()), 4),
        "fpr": round(float((neg >= threshold).mean()), 4),
        "threshold": float(threshold),
    }


def detection(
    positives: dict[str, list[str]], negatives: dict[str, list[str]], direction: str
) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, scorer in scorers(direction).items():
        pos = {k: np.array([scorer(t) for t in v]) for k, v in positives.items()}
        neg = {k: np.array([scorer(t) for t in v]) for k, v in negatives.items()}
        all_pos = np.concatenate(list(pos.values()))
        all_neg = np.concatenate(list(neg.values()))
        at_fpr = recall_at_fpr(all_pos, all_neg)
        out[name] = {
            "overall": {**rates(all_pos, all_neg), "recall_at_1pct_fpr": at_fpr},
            "by_min_score": {
                f"{floor:.1f}": {
                    k: v
                    for k, v in rates(all_pos, all_neg, floor).items()
                    if k in ("recall", "fpr")
                }
                for floor in (0.5, 0.6, 0.7, 0.8)
            },
            "by_attack_set": {
                k: {
                    "n": len(v),
                    "recall": round(float((v >= OPERATING).mean()), 4),
                    "recall_at_1pct_fpr": round(float((v >= at_fpr["threshold"]).mean()), 4),
                }
                for k, v in pos.items()
            },
            "by_benign_set": {
                k: {"n": len(v), "fpr": round(float((v >= OPERATING).mean()), 4)}
                for k, v in neg.items()
            },
        }
    return out


# -- evasion ---------------------------------------------------------------------------------------
_LATIN_TO_LOOKALIKE: dict[str, list[str]] = {}
for lookalike, latin in HOMOGLYPHS.items():
    if latin.isalpha() and not lookalike.isascii():
        _LATIN_TO_LOOKALIKE.setdefault(latin, []).append(lookalike)


def zero_width(text: str, rng: random.Random) -> str:
    marks = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]
    return "".join(c + rng.choice(marks) if c.isalpha() else c for c in text)


def tag_characters(text: str, rng: random.Random) -> str:
    return "".join(c + chr(0xE0000 + rng.randint(0x20, 0x7E)) if c.isalpha() else c for c in text)


def homoglyphs(text: str, rng: random.Random) -> str:
    return "".join(
        rng.choice(_LATIN_TO_LOOKALIKE[c]) if c in _LATIN_TO_LOOKALIKE and rng.random() < 0.5 else c
        for c in text
    )


def evasion(attacks: list[str], guard: Guard) -> dict[str, object]:
    combined = scorers("input")["rules+classifier"]
    variants: dict[str, Callable[[str, random.Random], str]] = {
        "zero_width": zero_width,
        "tag_characters": tag_characters,
        "homoglyphs": homoglyphs,
    }
    plain = float(np.mean([combined(t) >= OPERATING for t in attacks]))
    out: dict[str, object] = {"plain_detection_rate": round(plain, 4), "n": len(attacks)}
    for name, make in variants.items():
        rng = random.Random(f"evasion:{name}")
        texts = [make(t, rng) for t in attacks]
        rate = float(np.mean([combined(t) >= OPERATING for t in texts]))
        pipeline = float(np.mean([guard.inspect_text("bench", "input", t).blocked for t in texts]))
        out[name] = {
            "detection_rate": round(rate, 4),
            "ratio_to_plain": round(rate / plain, 4) if plain else 0.0,
            "whole_pipeline_block_rate": round(pipeline, 4),
        }
    return out


# -- PII -------------------------------------------------------------------------------------------
def pii(data_dir: Path) -> dict[str, object]:
    rows = json.loads((data_dir / "pii" / "presidio_synth_v2_dev.json").read_text())
    inspector = PiiInspector()
    context = InspectionContext()
    counts: dict[str, Counter[str]] = {"overlap": Counter(), "exact": Counter()}
    for row in rows:
        text = row["full_text"]
        gold = [
            (PII_TYPES[s["entity_type"]], s["start_position"], s["end_position"])
            for s in row["spans"]
            if s["entity_type"] in PII_TYPES
        ]
        predicted = [
            (f.category.split(":", 1)[1], f.start, f.end)
            for f in inspector.inspect(normalize(text).text, context)
            if f.category.split(":", 1)[1] in PII_TYPES.values()
        ]
        for mode in ("overlap", "exact"):
            used: set[int] = set()
            for kind, start, end in predicted:
                match = next(
                    (
                        i
                        for i, (g_kind, g_start, g_end) in enumerate(gold)
                        if i not in used
                        and g_kind == kind
                        and (
                            (start < g_end and g_start < end)
                            if mode == "overlap"
                            else (start, end) == (g_start, g_end)
                        )
                    ),
                    None,
                )
                if match is None:
                    counts[mode][f"fp:{kind}"] += 1
                else:
                    used.add(match)
                    counts[mode][f"tp:{kind}"] += 1
            for i, (kind, _, _) in enumerate(gold):
                if i not in used:
                    counts[mode][f"fn:{kind}"] += 1

    def f1(counter: Counter[str], kinds: Sequence[str]) -> dict[str, float]:
        tp = sum(counter[f"tp:{k}"] for k in kinds)
        fp = sum(counter[f"fp:{k}"] for k in kinds)
        fn = sum(counter[f"fn:{k}"] for k in kinds)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        score = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(score, 4),
            "support": tp + fn,
        }

    kinds = list(PII_TYPES.values())
    return {
        "rows": len(rows),
        "by_entity": {k: f1(counts["overlap"], [k]) for k in kinds},
        "micro": f1(counts["overlap"], kinds),
        "macro_f1": round(statistics.mean(f1(counts["overlap"], [k])["f1"] for k in kinds), 4),
        "exact_span": {
            "by_entity": {k: f1(counts["exact"], [k])["f1"] for k in kinds},
            "micro": f1(counts["exact"], kinds),
        },
    }


# -- latency ---------------------------------------------------------------------------------------
def prompts_of_tokens(texts: Sequence[str], tokens: int, count: int) -> list[str]:
    out: list[str] = []
    i = 0
    while len(out) < count:
        words: list[str] = []
        while count_tokens(" ".join(words)) < tokens:
            words.extend(texts[i % len(texts)].split())
            i += 1
        lo, hi = 0, len(words)
        while lo < hi:  # longest prefix of at most `tokens` tokens
            mid = (lo + hi + 1) // 2
            if count_tokens(" ".join(words[:mid])) <= tokens:
                lo = mid
            else:
                hi = mid - 1
        out.append(" ".join(words[:lo]))
    return out


def latency(guard: Guard, prompts: list[str]) -> dict[str, object]:
    messages = [[{"role": "user", "content": p}] for p in prompts]
    for m in messages[:30]:
        guard.inspect_request("bench", m)
    times = []
    for m in messages:
        started = time.perf_counter()
        guard.inspect_request("bench", m)
        times.append((time.perf_counter() - started) * 1000.0)
    by_inspector: dict[str, float] = {}
    context = InspectionContext()
    for inspector in guard.pipelines["input"].inspectors:
        spent = []
        for p in prompts[:100]:
            view = normalize(p).text
            started = time.perf_counter()
            inspector.inspect(view, context)
            spent.append((time.perf_counter() - started) * 1000.0)
        by_inspector[inspector.name] = round(float(np.median(spent)), 3)
    return {
        "prompts": len(prompts),
        "tokens_per_prompt": 512,
        "mean_chars": round(float(np.mean([len(p) for p in prompts])), 1),
        "p50_ms": round(float(np.percentile(times, 50)), 3),
        "p95_ms": round(float(np.percentile(times, 95)), 3),
        "p99_ms": round(float(np.percentile(times, 99)), 3),
        "median_ms_by_inspector": by_inspector,
    }


def machine() -> dict[str, object]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--latency-prompts", type=int, default=300)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "guard_eval.json")
    args = parser.parse_args(argv)
    corpus = load_corpus(args.data)
    guard = Guard(GuardPolicy())
    validation = corpus.prompts_in("validation")
    attacks: dict[str, list[str]] = {}
    benign: dict[str, list[str]] = {}
    for example in validation:
        (attacks if example.label else benign).setdefault(example.dataset, []).append(example.text)
    input_results = detection(attacks, benign, "input")
    combined = scorers("input")["rules+classifier"]
    unsafe_flag_rate = float(np.mean([combined(t) >= OPERATING for t in corpus.xstest_unsafe]))

    planted = planted_contexts(corpus, "validation", per_attack=6, seed=7)
    context_pos: dict[str, list[str]] = {}
    for text, attack, context in planted:
        context_pos.setdefault(f"bipia/{attack.kind}-attack-in-{context.kind}", []).append(text)
    context_neg: dict[str, list[str]] = {}
    for context in corpus.contexts_in("validation"):
        context_neg.setdefault(f"bipia/clean-{context.kind}", []).append(context.text)
    context_results = detection(context_pos, context_neg, "context")

    all_attacks = [t for texts in attacks.values() for t in texts]
    evasion_results = evasion(all_attacks, guard)
    pii_results = pii(args.data)
    texts = [e.text for e in validation] + [c.text for c in corpus.contexts_in("validation")]
    random.Random(5).shuffle(texts)
    latency_results = latency(guard, prompts_of_tokens(texts, 512, args.latency_prompts))

    results = {
        "machine": machine(),
        "split": {
            "validation_prompts": {k: len(v) for k, v in {**attacks, **benign}.items()},
            "validation_contexts": {k: len(v) for k, v in context_neg.items()},
            "planted_contexts": {k: len(v) for k, v in context_pos.items()},
        },
        "operating_score": OPERATING,
        "injection_input": input_results,
        "xstest_unsafe_flag_rate_info_only": round(unsafe_flag_rate, 4),
        "injection_context": context_results,
        "evasion": evasion_results,
        "pii": pii_results,
        "latency_input_pipeline_512_tokens": latency_results,
        "anchors": ANCHORS,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"\nwrote {args.out}")
    return 0


def print_table(r: dict[str, object]) -> None:
    def get(*path: str) -> object:
        node: object = r
        for key in path:
            assert isinstance(node, dict)
            node = node[key]
        return node

    print(
        f"machine: {get('machine', 'cpu')} ({get('machine', 'cores')} cores), load {get('machine', 'load_average_1m')}"
    )
    print("\n== injection / jailbreak, input direction (validation split) ==")
    print(f"{'detector':<18} {'recall':>7} {'prec.':>7} {'FPR':>7} {'recall@1%FPR':>13}")
    for name in ("rules", "classifier", "rules+classifier"):
        o = get("injection_input", name, "overall")
        assert isinstance(o, dict)
        print(
            f"{name:<18} {o['recall']:>7.1%} {o['precision']:>7.1%} {o['fpr']:>7.2%} {o['recall_at_1pct_fpr']['recall']:>13.1%}"
        )
    curve = get("injection_input", "rules+classifier", "by_min_score")
    assert isinstance(curve, dict)
    print(
        "  policy min_score: "
        + ", ".join(
            f"{k} -> recall {v['recall']:.1%} / FPR {v['fpr']:.2%}" for k, v in curve.items()
        )
    )
    by = get("injection_input", "rules+classifier", "by_attack_set")
    assert isinstance(by, dict)
    for k, v in by.items():
        print(
            f"  {k:<40} n={v['n']:<4} recall {v['recall']:.1%}  @1%FPR {v['recall_at_1pct_fpr']:.1%}"
        )
    nb = get("injection_input", "rules+classifier", "by_benign_set")
    assert isinstance(nb, dict)
    for k, v in nb.items():
        print(f"  {k:<40} n={v['n']:<4} FPR {v['fpr']:.2%}")
    print("\n== indirect injection, context direction (BIPIA, validation) ==")
    for name in ("rules", "classifier", "rules+classifier"):
        o = get("injection_context", name, "overall")
        assert isinstance(o, dict)
        print(
            f"{name:<18} {o['recall']:>7.1%} {o['precision']:>7.1%} {o['fpr']:>7.2%} {o['recall_at_1pct_fpr']['recall']:>13.1%}"
        )
    print("\n== evasion (rules+classifier on the normalised view) ==")
    ev = get("evasion")
    assert isinstance(ev, dict)
    print(f"plain {ev['plain_detection_rate']:.1%}")
    for k in ("zero_width", "tag_characters", "homoglyphs"):
        print(f"  {k:<16} {ev[k]['detection_rate']:.1%}  ({ev[k]['ratio_to_plain']:.1%} of plain)")
    print("\n== PII (Presidio synthetic, overlap match) ==")
    by_entity = get("pii", "by_entity")
    assert isinstance(by_entity, dict)
    for k, v in by_entity.items():
        print(
            f"  {k:<12} P {v['precision']:.3f} R {v['recall']:.3f} F1 {v['f1']:.3f} (n={v['support']})"
        )
    micro = get("pii", "micro")
    assert isinstance(micro, dict)
    print(f"  {'micro':<12} F1 {micro['f1']:.3f}")
    lat = get("latency_input_pipeline_512_tokens")
    assert isinstance(lat, dict)
    print("\n== latency, whole input pipeline, 512-token prompt, 1 thread ==")
    print(f"P50 {lat['p50_ms']:.2f} ms  P95 {lat['p95_ms']:.2f} ms  P99 {lat['p99_ms']:.2f} ms")
    print("\n== anchors (published, not measured here) ==")
    for text in ANCHORS.values():
        print(f"  {text}")


if __name__ == "__main__":
    raise SystemExit(main())
