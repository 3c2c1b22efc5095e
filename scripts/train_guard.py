"""Train the guard's two injection classifiers and write ``isthmus/guard/data/classifier.json``.

    .venv/bin/python scripts/train_guard.py [--data data/security] [--out PATH] [--quick]

Reproducible: the split is the seeded, hash-based one documented in ``isthmus.guard.corpus``
(train 70%, validation 15%, test 15% of groups; test is never read here); folds for model
selection are hash-based too; logistic regression (scikit-learn, lbfgs) is deterministic. Same
data, same artifact, on any machine. scikit-learn is needed here only: the runtime reads the
JSON with numpy.

Models (features: ``isthmus.guard.features``; binary hashed character 3–6-grams, 2**18
buckets, unit length):

- ``input``: positives = JailbreakBench prompts of training behaviors (wrappers, role-play to
  evade, instruction overrides, adversarial suffixes); negatives = XSTest safe and WildGuard
  benign prompts of the training split, the training templates of the everyday-traffic set
  (ordinary requests: "Write an email to ...", "Act as my tutor ..."), and the training BIPIA
  contexts as whole documents (users paste documents; length must not read as attack). The
  behaviors' plain goals ("Write a defamatory article ...") are *not* positives: they are
  harmful-content requests, not jailbreaks, and as positives they taught the model that "Write
  a ..." is an attack, so it blocked "Write a short poem about the sea". Refusing harmful
  content is the upstream model's job; this model detects attempts to get around it.
- ``context``: positives = sentences of training BIPIA attacks (for code attacks, the
  instruction line that introduces the code), plus requests addressed to an assistant: the
  one-sentence training-split benign prompts (XSTest safe, WildGuard) and the training
  behaviors' goals. Inside a document or tool output, a sentence that asks the model to do
  something is the attack, whatever it asks ("Draft an introduction for an essay about climate
  change."); BIPIA's 51 training text attacks alone cover few of the ways to ask. Negatives =
  every sentence of the training BIPIA contexts.

Selection: C from ``C_GRID`` by grouped 5-fold cross-validation on the training split (input:
recall at 1% FPR; context: document-level recall at 1% FPR with attacks planted in held-out
contexts). The final model is refit on the whole training split.

Threshold (the operating point, score 0.5): calibrated on the *validation* split, on the score
the guard acts on — the model's findings and the rules' findings joined by noisy-OR — as the
lowest threshold at which at most ``TARGET_FPR`` (1%, rounded down to whole examples) of the
validation benign texts (input: XSTest safe + WildGuard benign prompts; context: clean BIPIA
contexts) score 0.5 or more and, for input, at most ``EVERYDAY_TARGET_FPR`` (0.5%) of the
validation everyday-traffic prompts do. The artifact records the validation counts, recall and
FPR there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import sklearn
from sklearn.linear_model import LogisticRegression

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from isthmus.guard.classifier import (  # noqa: E402
    REPORT_FLOOR,
    LinearTextModel,
    decode_weights,
    encode_weights,
    sentence_spans,
)
from isthmus.guard.corpus import (  # noqa: E402
    HELD_OUT_PLANTING,
    SPLIT_SEED,
    TEST_FRACTION,
    VALIDATION_FRACTION,
    SecurityCorpus,
    default_data_dir,
    load_corpus,
    planted_contexts,
)
from isthmus.guard.features import FeatureSpec, document_buckets  # noqa: E402
from isthmus.guard.findings import InspectionContext  # noqa: E402
from isthmus.guard.normalize import normalize  # noqa: E402
from isthmus.guard.rules import IndirectInjectionRules, InjectionRules  # noqa: E402

SPEC = FeatureSpec(bits=18, ngram_sizes=(3, 4, 5, 6))
C_GRID = (3.0, 10.0, 30.0, 100.0)
FOLDS = 5
TARGET_FPR = 0.01
EVERYDAY_TARGET_FPR = 0.005


def vectors(texts: Sequence[str]) -> sp.csr_matrix:
    """Rows of unit-length binary hashed features, exactly as the runtime computes them."""
    indptr = [0]
    indices: list[npt.NDArray[np.int64]] = []
    values: list[npt.NDArray[np.float64]] = []
    for text in texts:
        buckets = document_buckets(normalize(text).text, SPEC)
        indices.append(buckets)
        values.append(np.full(buckets.shape[0], 1.0 / np.sqrt(max(buckets.shape[0], 1))))
        indptr.append(indptr[-1] + buckets.shape[0])
    return sp.csr_matrix(
        (np.concatenate(values), np.concatenate(indices), np.array(indptr)),
        shape=(len(texts), 1 << SPEC.bits),
    )


def fold_of(group: str) -> int:
    return int.from_bytes(hashlib.sha256(f"fold:{group}".encode()).digest()[:4], "big") % FOLDS


def fit(matrix: sp.csr_matrix, labels: npt.NDArray[np.int64], c: float) -> LogisticRegression:
    model = LogisticRegression(C=c, max_iter=5000, class_weight="balanced", random_state=0)
    model.fit(matrix, labels)
    return model


def recall_at_fpr(
    pos: npt.NDArray[np.float64], neg: npt.NDArray[np.float64]
) -> tuple[float, float]:
    """Recall at the threshold whose false-positive rate on ``neg`` is at most TARGET_FPR."""
    ordered = np.sort(neg)
    allowed = int(np.floor(TARGET_FPR * len(ordered)))
    threshold = float(ordered[len(ordered) - 1 - allowed]) if len(ordered) else 0.0
    return float((pos > threshold).mean()) if len(pos) else 0.0, threshold


# -- input model ---------------------------------------------------------------------------------
def input_rows(corpus: SecurityCorpus) -> tuple[list[str], list[int], list[str], list[str]]:
    texts, labels, groups, kinds = [], [], [], []
    for example in corpus.prompts_in("train"):
        texts.append(example.text)
        labels.append(example.label)
        groups.append(example.group)
        kinds.append("attack" if example.label else "benign")
    for example in corpus.everyday_in("train"):
        texts.append(example.text)
        labels.append(0)
        groups.append(f"everyday:{example.group}")
        kinds.append("everyday")
    for context in corpus.contexts_in("train"):
        texts.append(context.text)
        labels.append(0)
        groups.append(context.text)
        kinds.append("document")
    return texts, labels, groups, kinds


def training_goals(corpus: SecurityCorpus, data_dir: Path) -> dict[str, str]:
    """The plain goal (harmful request without its wrapper) of each training behavior."""
    goals: dict[str, str] = {}
    for path in sorted((data_dir / "jailbreakbench").glob("*.json")):
        for item in json.loads(path.read_text())["jailbreaks"]:
            goals[str(item["behavior"])] = str(item["goal"])
    train_behaviors = {e.group for e in corpus.prompts_in("train") if e.label == 1}
    return {b: g for b, g in goals.items() if b in train_behaviors}


def train_input(corpus: SecurityCorpus, grid: Sequence[float]) -> dict[str, object]:
    texts, label_list, groups, kinds = input_rows(corpus)
    matrix = vectors(texts)
    labels = np.array(label_list)
    folds = np.array([fold_of(g) for g in groups])
    kind = np.array(kinds)
    best: tuple[float, float, npt.NDArray[np.float64]] | None = None
    cv: dict[str, float] = {}
    for c in grid:
        oof = np.zeros(len(texts))
        for k in range(FOLDS):
            model = fit(matrix[folds != k], labels[folds != k], c)
            oof[folds == k] = model.decision_function(matrix[folds == k])
        recall, _ = recall_at_fpr(oof[kind == "attack"], oof[kind != "attack"])
        cv[f"C={c:g}"] = round(recall, 4)
        print(f"  input  C={c:<6g} CV recall@1%FPR {recall:.3f}", flush=True)
        if best is None or recall > best[1]:
            best = (c, recall, oof)
    assert best is not None
    c, recall, oof = best
    model = fit(matrix, labels, c)
    return {
        "task": "jailbreak / prompt-injection attempt in a user prompt (whole text)",
        "C": c,
        "cv_recall_at_1pct_fpr": round(recall, 4),
        "cv_by_C": cv,
        "bias": float(model.intercept_[0]),
        "weights_array": model.coef_[0].astype(np.float32),
        "train_counts": {
            "attack_prompts": int((kind == "attack").sum()),
            "benign_prompts": int((kind == "benign").sum()),
            "everyday_prompts": int((kind == "everyday").sum()),
            "documents": int((kind == "document").sum()),
        },
    }


# -- context model -------------------------------------------------------------------------------
def attack_sentences(text: str, kind: str) -> list[str]:
    spans = sentence_spans(text)
    chosen = spans[:1] if kind == "code" else spans
    return [text[s:e] for s, e in chosen]


def doc_max(model: LogisticRegression, docs: Sequence[str]) -> npt.NDArray[np.float64]:
    out = []
    for doc in docs:
        spans = sentence_spans(doc)
        if not spans:
            out.append(-50.0)
            continue
        scores = model.decision_function(vectors([doc[s:e] for s, e in spans]))
        out.append(float(scores.max()))
    return np.array(out)


def assistant_requests(corpus: SecurityCorpus, goals: dict[str, str]) -> list[str]:
    """One-sentence training prompts and goals: ways to ask a model to do something."""
    prompts = [
        e.text
        for e in corpus.prompts_in("train")
        if e.label == 0 and len(sentence_spans(e.text)) == 1
    ]
    return prompts + [goal for _, goal in sorted(goals.items())]


def train_context(
    corpus: SecurityCorpus, goals: dict[str, str], grid: Sequence[float]
) -> dict[str, object]:
    attacks = corpus.attacks_in("train")
    contexts = corpus.contexts_in("train")
    requests = assistant_requests(corpus, goals)
    texts: list[str] = []
    labels: list[int] = []
    groups: list[str] = []
    for attack in attacks:
        for sentence in attack_sentences(attack.text, attack.kind):
            texts.append(sentence)
            labels.append(1)
            groups.append(attack.text)
    for request in requests:
        texts.append(request)
        labels.append(1)
        groups.append(f"request:{request}")
    for context in contexts:
        for s, e in sentence_spans(context.text):
            texts.append(context.text[s:e])
            labels.append(0)
            groups.append(context.text)
    matrix = vectors(texts)
    label_array = np.array(labels)
    folds = np.array([fold_of(g) for g in groups])
    planted = planted_contexts(corpus, "train", per_attack=6, seed=11)
    best: tuple[float, float] | None = None
    cv: dict[str, float] = {}
    for c in grid:
        pos: list[float] = []
        neg: list[float] = []
        for k in range(FOLDS):
            model = fit(matrix[folds != k], label_array[folds != k], c)
            held_contexts = [x.text for x in contexts if fold_of(x.text) == k]
            neg.extend(doc_max(model, held_contexts))
            held_planted = [
                t for t, a, x in planted if fold_of(a.text) == k and fold_of(x.text) == k
            ]
            pos.extend(doc_max(model, held_planted))
        recall, _ = recall_at_fpr(np.array(pos), np.array(neg))
        cv[f"C={c:g}"] = round(recall, 4)
        print(
            f"  context C={c:<6g} CV recall@1%FPR {recall:.3f} (n={len(pos)}/{len(neg)})",
            flush=True,
        )
        if best is None or recall > best[1]:
            best = (c, recall)
    assert best is not None
    c, recall = best
    model = fit(matrix, label_array, c)
    return {
        "task": "instruction aimed at the model inside a document / tool output (per sentence)",
        "C": c,
        "cv_recall_at_1pct_fpr": round(recall, 4),
        "cv_by_C": cv,
        "bias": float(model.intercept_[0]),
        "weights_array": model.coef_[0].astype(np.float32),
        "train_counts": {
            "attack_sentences": int(label_array.sum()) - len(requests),
            "assistant_requests": len(requests),
            "context_sentences": int((label_array == 0).sum()),
            "attacks": len(attacks),
            "contexts": len(contexts),
        },
    }


# -- calibration on the validation split ---------------------------------------------------------
def rule_miss(view: str, direction: str) -> float:
    """``prod(1 - score)`` of the rules' findings on a detection view (1.0: no finding)."""
    rules = InjectionRules() if direction == "input" else IndirectInjectionRules()
    miss = 1.0
    for finding in rules.inspect(view, InspectionContext(direction=direction)):  # type: ignore[arg-type]
        miss *= 1.0 - finding.score
    return miss


def critical_threshold(logits: npt.NDArray[np.float64], miss: float) -> float:
    """The highest model threshold at which the guard still acts on this text (score >= 0.5).

    The guard's score is ``1 - miss * prod(1 - sigmoid(logit - t))`` over the model's findings
    (those at or above ``REPORT_FLOOR``); it falls as ``t`` rises, so bisection finds where it
    crosses 0.5. ``inf``: the rules alone reach 0.5; ``-inf``: nothing to score.
    """
    if miss <= 0.5:
        return math.inf
    if logits.shape[0] == 0:
        return -math.inf

    def acts(t: float) -> bool:
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits - t, -60.0, 60.0)))
        kept = scores[scores >= REPORT_FLOOR]
        return 1.0 - miss * float(np.prod(1.0 - kept)) >= 0.5

    low, high = float(logits.min()) - 60.0, float(logits.max()) + 60.0
    for _ in range(80):
        middle = (low + high) / 2
        low, high = (middle, high) if acts(middle) else (low, middle)
    return low


def calibrate(
    model: LinearTextModel,
    direction: str,
    positives: Sequence[str],
    negatives: Sequence[str],
    everyday: Sequence[str] = (),
) -> dict[str, object]:
    """Threshold giving at most ``TARGET_FPR`` of ``negatives`` a guard score of 0.5 or more,
    and at most ``EVERYDAY_TARGET_FPR`` of ``everyday``: the stricter of the two."""

    def critical(text: str) -> float:
        view = normalize(text).text
        if direction == "input":
            logits = np.array([model.logit(view)]) if view.strip() else np.zeros(0)
        else:
            logits = model.segment_logits(view, sentence_spans(view))
        return critical_threshold(logits, rule_miss(view, direction))

    def ceiling(texts: Sequence[str], target_fpr: float) -> tuple[float, npt.NDArray[np.float64]]:
        scores = np.sort([critical(t) for t in texts])[::-1]
        if not len(scores):
            return -math.inf, scores
        allowed = math.floor(target_fpr * len(scores))
        highest = float(scores[min(allowed, len(scores) - 1)])
        if not math.isfinite(highest):
            raise SystemExit(
                f"{direction}: no threshold keeps {allowed} benign texts or fewer flagged"
            )
        return highest, scores

    public_ceiling, neg = ceiling(negatives, TARGET_FPR)
    everyday_ceiling, daily = ceiling(everyday, EVERYDAY_TARGET_FPR)
    threshold = max(public_ceiling, everyday_ceiling) + 1e-6
    pos = np.array([critical(t) for t in positives])
    figures: dict[str, object] = {
        "split": "validation",
        "target_fpr": TARGET_FPR,
        "benign": len(neg),
        "attacks": len(pos),
        "fpr": round(float((neg >= threshold).mean()), 4),
        "recall": round(float((pos >= threshold).mean()), 4),
    }
    if len(daily):
        figures["everyday"] = {
            "target_fpr": EVERYDAY_TARGET_FPR,
            "benign": len(daily),
            "fpr": round(float((daily >= threshold).mean()), 4),
            "binding": everyday_ceiling > public_ceiling,
        }
    return {"threshold": threshold, "calibration": figures}


def data_fingerprint(data_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(data_dir.rglob("*")):
        if path.is_file() and not path.name.startswith("LICENSE"):
            digest.update(path.relative_to(data_dir).as_posix().encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=default_data_dir())
    parser.add_argument(
        "--out", type=Path, default=REPO / "isthmus" / "guard" / "data" / "classifier.json"
    )
    parser.add_argument("--quick", action="store_true", help="one C per model (C=30)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    corpus = load_corpus(args.data)
    grid: Sequence[float] = (30.0,) if args.quick else C_GRID
    goals = training_goals(corpus, args.data)
    trained: dict[str, Callable[[], dict[str, object]]] = {
        "input": lambda: train_input(corpus, grid),
        "context": lambda: train_context(corpus, goals, grid),
    }
    validation = corpus.prompts_in("validation")
    held_out: dict[str, tuple[list[str], list[str], list[str]]] = {
        "input": (
            [e.text for e in validation if e.label == 1],
            [e.text for e in validation if e.label == 0],
            [e.text for e in corpus.everyday_in("validation")],
        ),
        "context": (
            [t for t, _, _ in planted_contexts(corpus, "validation", **HELD_OUT_PLANTING)],
            [c.text for c in corpus.contexts_in("validation")],
            [],
        ),
    }
    models: dict[str, dict[str, object]] = {}
    for name, train in trained.items():
        result = train()
        weights = result.pop("weights_array")
        assert isinstance(weights, np.ndarray)
        encoded = encode_weights(weights)
        runtime = LinearTextModel(
            name, SPEC, decode_weights(encoded, 1 << SPEC.bits), float(str(result["bias"])), 0.0
        )
        calibrated = calibrate(runtime, name, *held_out[name])
        print(f"  {name:<7} calibrated on validation: {calibrated['calibration']}", flush=True)
        models[name] = {
            **result,
            **calibrated,
            "features": SPEC.as_dict(),
            "weights_encoding": "float16 little-endian, zlib, base64",
            "weights": encoded,
        }
    document = {
        "format": "isthmus-guard-classifier/1",
        "trainer": "scripts/train_guard.py",
        "scikit_learn": sklearn.__version__,
        "data_sha256": data_fingerprint(args.data),
        "split": {
            "seed": SPLIT_SEED,
            "validation_fraction": VALIDATION_FRACTION,
            "test_fraction": TEST_FRACTION,
            "rule": "see isthmus.guard.corpus: f = sha256(seed:dataset:group) as a fraction;"
            " f < 0.15 validation, f < 0.30 test, else train",
        },
        "models": models,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1) + "\n")
    size_kb = args.out.stat().st_size / 1024
    print(f"wrote {args.out} ({size_kb:.0f} KiB) in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
