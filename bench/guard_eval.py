"""Guard evaluation on held-out public attack data: detection, evasion, PII, latency.

    .venv/bin/python bench/guard_eval.py [--data data/security] [--latency-prompts 300]

Detection is measured on both held-out sides of the split (``isthmus.guard.corpus``: 15% of
groups each, seeded by hash; the classifiers never trained on either). ``validation`` is where
``scripts/train_guard.py`` calibrated the operating thresholds; ``test`` was never used to fit,
select or calibrate anything, so its figures are the ones to quote. For each side, in one run:

1. Injection / jailbreak, input direction: JailbreakBench prompts (per method) against XSTest
   safe + WildGuard benign prompts. Three detectors: the rules alone, the classifier alone,
   and rules + classifier as the guard combines them (noisy-OR, acted on at score >= 0.5).
   Recall, precision, false-positive rate at the operating point, and recall at 1% FPR (the
   threshold on the combined score that lets at most 1% of the benign prompts through).
2. Indirect injection, context direction: held-out BIPIA attacks planted in held-out BIPIA
   contexts of the same side (e-mail, table, code) against that side's clean contexts; same
   three detectors.
3. Everyday traffic: the held-out templates of ``data/security/everyday`` (ordinary requests
   written for Isthmus: e-mails, code, SQL, summaries, translation, planning, personas); the
   share each detector flags at the operating point, and the share the whole default guard
   blocks (``Guard.inspect_text``), by category, with the flagged prompts listed. Kept apart
   from XSTest + WildGuard, whose prompts do not look like everyday work.
4. Evasion: the held-out attacks with zero-width characters between letters, tag characters
   between letters, and Cyrillic/Greek homoglyphs for half the letters (seeded); detection
   rate of rules + classifier on the normalised visible text, as a fraction of the plain rate
   (the separate tag-smuggling finding is reported apart, not counted).
5. PII: Presidio synthetic sentences (1,000), structured entities only (card, IBAN, e-mail,
   phone, SSN, IP); a prediction is a true positive if it overlaps an unmatched gold span of
   the same type; exact-span F1 too. The rules were written while looking at this set (there
   is no held-out PII set): read these figures as an upper bound.
6. Latency: the whole input pipeline (``Guard.inspect_request`` on one 512-token user message:
   normalisation, rules, classifier, PII, secrets, URLs, caps, verdicts), P50/P95 over
   ``--latency-prompts`` prompts built from held-out texts, after a warm-up, one thread.

Writes ``bench/results/guard_eval.json`` and prints the figures and a README-ready table beside
the published anchors.
"""

from __future__ import annotations

import argparse
import hashlib
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
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from machine import cpu_model  # noqa: E402  (bench/ is on sys.path: this script's folder)

from isthmus.engines.tokens import count_tokens  # noqa: E402
from isthmus.guard import Guard, GuardPolicy, InspectionContext, Inspector  # noqa: E402
from isthmus.guard.classifier import (  # noqa: E402
    DEFAULT_ARTIFACT,
    ContextClassifier,
    InputClassifier,
)
from isthmus.guard.corpus import (  # noqa: E402
    HELD_OUT_PLANTING,
    Example,
    SecurityCorpus,
    Split,
    default_data_dir,
    load_corpus,
    planted_contexts,
)
from isthmus.guard.decide import attack_score  # noqa: E402
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
    """The attack score the guard acts on (each rule once, at its strongest; noisy-OR)."""
    return attack_score(findings)


def scorers(direction: str) -> dict[str, Scorer]:
    """Score in [0, 1] of each detector on a text (normalised first, as the pipeline does)."""
    rules: Inspector = InjectionRules() if direction == "input" else IndirectInjectionRules()
    model: Inspector = InputClassifier() if direction == "input" else ContextClassifier()
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


# -- everyday traffic -----------------------------------------------------------------------------
def everyday_traffic(examples: Sequence[Example], guard: Guard) -> dict[str, object]:
    """How much ordinary work each detector flags and the default guard blocks."""
    texts = [e.text for e in examples]
    out: dict[str, object] = {"n": len(texts), "templates": len({e.group for e in examples})}
    for name, scorer in scorers("input").items():
        flagged = sum(scorer(t) >= OPERATING for t in texts)
        out[name] = {"fpr": round(flagged / len(texts), 4) if texts else 0.0, "fp": flagged}
    blocked = [e for e in examples if guard.inspect_text("bench", "input", e.text).blocked]
    categories = sorted({e.group.split("/")[0] for e in examples})
    out["whole_pipeline_block_rate"] = round(len(blocked) / len(texts), 4) if texts else 0.0
    out["blocked_by_category"] = {
        c: f"{sum(e.group.startswith(c + '/') for e in blocked)}"
        f"/{sum(e.group.startswith(c + '/') for e in examples)}"
        for c in categories
    }
    out["blocked_prompts"] = [e.text for e in blocked][:20]
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
    cpu_times = []  # this thread's CPU time: what the guard costs, whatever else the host runs
    for m in messages:
        started, cpu_started = time.perf_counter(), time.thread_time()
        guard.inspect_request("bench", m)
        times.append((time.perf_counter() - started) * 1000.0)
        cpu_times.append((time.thread_time() - cpu_started) * 1000.0)
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
        "cpu_p50_ms": round(float(np.percentile(cpu_times, 50)), 3),
        "cpu_p95_ms": round(float(np.percentile(cpu_times, 95)), 3),
        "median_ms_by_inspector": by_inspector,
    }


def machine() -> dict[str, object]:
    cpu = cpu_model()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def held_out(corpus: SecurityCorpus, split: Split, guard: Guard) -> dict[str, object]:
    """Detection and evasion figures on one held-out side of the split."""
    attacks: dict[str, list[str]] = {}
    benign: dict[str, list[str]] = {}
    for example in corpus.prompts_in(split):
        (attacks if example.label else benign).setdefault(example.dataset, []).append(example.text)
    input_results = detection(attacks, benign, "input")
    planted = planted_contexts(corpus, split, **HELD_OUT_PLANTING)
    context_pos: dict[str, list[str]] = {}
    for text, attack, context in planted:
        context_pos.setdefault(f"bipia/{attack.kind}-attack-in-{context.kind}", []).append(text)
    context_neg: dict[str, list[str]] = {}
    for context in corpus.contexts_in(split):
        context_neg.setdefault(f"bipia/clean-{context.kind}", []).append(context.text)
    context_results = detection(context_pos, context_neg, "context")
    all_attacks = [t for texts in attacks.values() for t in texts]
    return {
        "counts": {
            "prompts": {k: len(v) for k, v in {**attacks, **benign}.items()},
            "contexts": {k: len(v) for k, v in context_neg.items()},
            "planted_contexts": {k: len(v) for k, v in context_pos.items()},
            "bipia_attacks": {
                kind: sum(1 for a in corpus.attacks_in(split) if a.kind == kind)
                for kind in ("text", "code")
            },
        },
        "injection_input": input_results,
        "injection_context": context_results,
        "everyday_traffic": everyday_traffic(corpus.everyday_in(split), guard),
        "evasion": evasion(all_attacks, guard),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument("--latency-prompts", type=int, default=300)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "guard_eval.json")
    args = parser.parse_args(argv)
    corpus = load_corpus(args.data)
    guard = Guard(GuardPolicy())
    combined = scorers("input")["rules+classifier"]
    unsafe_flag_rate = float(np.mean([combined(t) >= OPERATING for t in corpus.xstest_unsafe]))
    splits: tuple[Split, ...] = ("validation", "test")
    by_split: dict[str, object] = {split: held_out(corpus, split, guard) for split in splits}
    pii_results = pii(args.data)
    texts = [e.text for split in splits for e in corpus.prompts_in(split)]
    texts += [c.text for split in splits for c in corpus.contexts_in(split)]
    random.Random(5).shuffle(texts)
    latency_results = latency(guard, prompts_of_tokens(texts, 512, args.latency_prompts))
    header = json.loads(DEFAULT_ARTIFACT.read_text())
    results: dict[str, Any] = {
        "machine": machine(),
        "artifact": {
            "sha256": hashlib.sha256(DEFAULT_ARTIFACT.read_bytes()).hexdigest()[:16],
            "calibration": {
                name: model.get("calibration", "threshold from training folds")
                for name, model in header["models"].items()
            },
        },
        "operating_score": OPERATING,
        **by_split,
        "xstest_unsafe_flag_rate_info_only": round(unsafe_flag_rate, 4),
        "pii": pii_results,
        "latency_input_pipeline_512_tokens": latency_results,
        "anchors": ANCHORS,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"\nwrote {args.out}")
    return 0


def _pct(x: object) -> str:
    assert isinstance(x, float | int)
    return f"{x:.1%}"


def print_table(r: dict[str, Any]) -> None:
    m = r["machine"]
    print(f"machine: {m['cpu']} ({m['cores']} cores), load {m['load_average_1m']}")
    for split in ("validation", "test"):
        s = r[split]
        print(f"\n== injection / jailbreak, input direction ({split} split) ==")
        print(f"{'detector':<18} {'recall':>7} {'prec.':>7} {'FPR':>7} {'recall@1%FPR':>13}")
        for name in ("rules", "classifier", "rules+classifier"):
            o = s["injection_input"][name]["overall"]
            print(
                f"{name:<18} {o['recall']:>7.1%} {o['precision']:>7.1%} {o['fpr']:>7.2%}"
                f" {o['recall_at_1pct_fpr']['recall']:>13.1%}"
            )
        combined = s["injection_input"]["rules+classifier"]
        curve = combined["by_min_score"]
        print(
            "  policy min_score: "
            + ", ".join(
                f"{k} -> recall {_pct(v['recall'])} / FPR {v['fpr']:.2%}" for k, v in curve.items()
            )
        )
        for k, v in combined["by_attack_set"].items():
            print(
                f"  {k:<40} n={v['n']:<4} recall {_pct(v['recall'])}  @1%FPR {_pct(v['recall_at_1pct_fpr'])}"
            )
        for k, v in combined["by_benign_set"].items():
            print(f"  {k:<40} n={v['n']:<4} FPR {v['fpr']:.2%}")
        print(f"\n== indirect injection, context direction (BIPIA, {split} split) ==")
        for name in ("rules", "classifier", "rules+classifier"):
            o = s["injection_context"][name]["overall"]
            print(
                f"{name:<18} {o['recall']:>7.1%} {o['precision']:>7.1%} {o['fpr']:>7.2%}"
                f" {o['recall_at_1pct_fpr']['recall']:>13.1%}"
            )
        combined = s["injection_context"]["rules+classifier"]
        for k, v in combined["by_attack_set"].items():
            print(
                f"  {k:<40} n={v['n']:<4} recall {_pct(v['recall'])}  @1%FPR {_pct(v['recall_at_1pct_fpr'])}"
            )
        for k, v in combined["by_benign_set"].items():
            print(f"  {k:<40} n={v['n']:<4} FPR {v['fpr']:.2%}")
        daily = s["everyday_traffic"]
        print(
            f"\n== everyday traffic ({split} templates: {daily['templates']},"
            f" prompts: {daily['n']}) =="
        )
        for name in ("rules", "classifier", "rules+classifier"):
            print(f"{name:<18} FPR {daily[name]['fpr']:.2%} ({daily[name]['fp']})")
        print(f"whole default guard blocks {daily['whole_pipeline_block_rate']:.2%}")
        print(
            "  blocked by category: "
            + ", ".join(f"{k} {v}" for k, v in daily["blocked_by_category"].items())
        )
        for text in daily["blocked_prompts"]:
            print(f"  blocked: {text[:90]!r}")
        ev = s["evasion"]
        print(f"\n== evasion, {split} attacks (rules+classifier on the normalised view) ==")
        print(f"plain {_pct(ev['plain_detection_rate'])}")
        for k in ("zero_width", "tag_characters", "homoglyphs"):
            print(
                f"  {k:<16} {_pct(ev[k]['detection_rate'])}  ({_pct(ev[k]['ratio_to_plain'])} of plain)"
            )
    print("\n== PII (Presidio synthetic, overlap match) ==")
    for k, v in r["pii"]["by_entity"].items():
        print(
            f"  {k:<12} P {v['precision']:.3f} R {v['recall']:.3f} F1 {v['f1']:.3f} (n={v['support']})"
        )
    print(f"  {'micro':<12} F1 {r['pii']['micro']['f1']:.3f}")
    lat = r["latency_input_pipeline_512_tokens"]
    print("\n== latency, whole input pipeline, 512-token prompt, 1 thread ==")
    print(f"P50 {lat['p50_ms']:.2f} ms  P95 {lat['p95_ms']:.2f} ms  P99 {lat['p99_ms']:.2f} ms")
    print(f"CPU time of the thread: P50 {lat['cpu_p50_ms']:.2f} ms  P95 {lat['cpu_p95_ms']:.2f} ms")
    print("\n== README table ==")
    print(readme_table(r))


def readme_table(r: dict[str, Any]) -> str:
    """The figures as a Markdown table, test split first, validation beside it."""

    def both(path: Callable[[dict[str, Any]], float], fmt: Callable[[float], str]) -> str:
        return f"{fmt(path(r['test']))} (validation {fmt(path(r['validation']))})"

    def inp(s: dict[str, Any]) -> dict[str, Any]:
        return s["injection_input"]["rules+classifier"]  # type: ignore[no-any-return]

    def ctx(s: dict[str, Any]) -> dict[str, Any]:
        return s["injection_context"]["rules+classifier"]  # type: ignore[no-any-return]

    pct = _pct
    lat = r["latency_input_pipeline_512_tokens"]
    rows = [
        (
            "jailbreak recall at the operating point",
            both(lambda s: inp(s)["overall"]["recall"], pct),
            "≥ 90%",
        ),
        (
            "benign FPR at the operating point (XSTest safe + WildGuard benign)",
            both(lambda s: inp(s)["overall"]["fpr"], lambda x: f"{x:.2%}"),
            "≤ 1%",
        ),
        (
            "everyday-traffic FPR (held-out templates; whole default guard blocks)",
            both(
                lambda s: s["everyday_traffic"]["whole_pipeline_block_rate"],
                lambda x: f"{x:.2%}",
            ),
            "≤ 0.5%",
        ),
        (
            "jailbreak recall at 1% FPR",
            both(lambda s: inp(s)["overall"]["recall_at_1pct_fpr"]["recall"], pct),
            "Prompt Guard 2 86M: 97.5% (GPU)",
        ),
    ]
    for name in r["test"]["injection_input"]["rules+classifier"]["by_attack_set"]:

        def per_set(s: dict[str, Any], name: str = name) -> float:
            return float(inp(s)["by_attack_set"][name]["recall_at_1pct_fpr"])

        rows.append(
            (
                f"  {name} recall at 1% FPR",
                both(per_set, pct),
                "",
            )
        )
    rows += [
        (
            "BIPIA indirect-injection recall at the operating point",
            both(lambda s: ctx(s)["overall"]["recall"], pct),
            "≥ 90%",
        ),
        (
            "BIPIA clean-context FPR at the operating point",
            both(lambda s: ctx(s)["overall"]["fpr"], lambda x: f"{x:.2%}"),
            "",
        ),
        (
            "BIPIA recall at 1% FPR",
            both(lambda s: ctx(s)["overall"]["recall_at_1pct_fpr"]["recall"], pct),
            "",
        ),
        (
            "evasion (worst of zero-width, tag, homoglyph), % of plain",
            both(
                lambda s: min(
                    s["evasion"][k]["ratio_to_plain"]
                    for k in ("zero_width", "tag_characters", "homoglyphs")
                ),
                pct,
            ),
            "≥ 90%",
        ),
        (
            "structured PII F1 (Presidio synthetic, micro)",
            f"{r['pii']['micro']['f1']:.3f}",
            "≥ 0.90",
        ),
        (
            "whole input pipeline, 512-token prompt, P50 / P95 (wall; CPU)",
            f"{lat['p50_ms']:.1f} / {lat['p95_ms']:.1f} ms; {lat['cpu_p50_ms']:.1f} / {lat['cpu_p95_ms']:.1f} ms"
            f" (host load {r['machine']['load_average_1m']} on {r['machine']['cores']} cores)",
            "≤ 5 ms P95; LLM Guard injection scanner 104–213 ms (CPU)",
        ),
    ]
    lines = ["| measure | Isthmus guard, test split | target / anchor |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
