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
  evade, instruction overrides, adversarial suffixes), weighted so that each attack method
  (JailbreakChat, PAIR, random search) carries the same total weight — otherwise the 142
  near-identical copies of one JailbreakChat wrapper outweigh PAIR's varied role-play
  paraphrases, which are what ordinary role-play prompts must be told apart from; negatives = XSTest safe and WildGuard
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
recall at ``INPUT_TARGET_FPR`` of the XSTest safe + WildGuard benign prompts; context: document-level recall at 1% FPR with attacks planted
in held-out contexts). The final model is refit on the whole training split.

Threshold (the operating point, score 0.5), on the score the guard acts on — the model's
finding and the rules' findings combined as ``isthmus.guard.decide.attack_score`` does:

- input: the lowest threshold whose *expected* false-positive rate on unseen benign prompts
  is at most ``INPUT_TARGET_FPR`` (0.5%), estimated on every XSTest safe + WildGuard benign
  prompt the scoring model never saw: the validation prompts (scored by the final model) and
  the training prompts scored out of fold by the cross-validation model that left them out
  (cross-conformal). With ``n`` such prompts it lets at most ``k`` of them reach 0.5, the
  largest ``k`` with ``(k + 1) / (n + 1) <= INPUT_TARGET_FPR``. The budget is 1%; the
  operating point aims at half of it because a threshold whose true rate is 1% shows more
  than 1% on a sample of ~180 prompts about half the time, and because a 1% quantile read
  off the 181 validation prompts alone rests on their two highest scores. At most
  ``EVERYDAY_TARGET_FPR`` (0.5%, rounded down) of the validation everyday-traffic prompts may
  reach 0.5 as well; the stricter of the two wins.
- context: the lowest threshold at which at most ``TARGET_FPR`` (1%, rounded down to whole
  examples) of the validation clean BIPIA contexts score 0.5 or more.

The artifact records the counts, recall and FPR on the validation split.
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
from isthmus.guard.decide import attack_score  # noqa: E402
from isthmus.guard.features import FeatureSpec, document_buckets  # noqa: E402
from isthmus.guard.findings import InspectionContext  # noqa: E402
from isthmus.guard.normalize import normalize  # noqa: E402
from isthmus.guard.rules import IndirectInjectionRules, InjectionRules  # noqa: E402

SPEC = FeatureSpec(bits=18, ngram_sizes=(3, 4, 5, 6))
C_GRID = (3.0, 10.0, 30.0, 100.0)
FOLDS = 5
TARGET_FPR = 0.01
INPUT_TARGET_FPR = 0.005
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


def fit(
    matrix: sp.csr_matrix,
    labels: npt.NDArray[np.int64],
    c: float,
    weights: npt.NDArray[np.float64] | None = None,
) -> LogisticRegression:
    model = LogisticRegression(C=c, max_iter=5000, class_weight="balanced", random_state=0)
    model.fit(matrix, labels, sample_weight=weights)
    return model


def recall_at_fpr(
    pos: npt.NDArray[np.float64], neg: npt.NDArray[np.float64], target_fpr: float = TARGET_FPR
) -> tuple[float, float]:
    """Recall at the threshold whose false-positive rate on ``neg`` is at most ``target_fpr``."""
    ordered = np.sort(neg)
    allowed = int(np.floor(target_fpr * len(ordered)))
    threshold = float(ordered[len(ordered) - 1 - allowed]) if len(ordered) else 0.0
    return float((pos > threshold).mean()) if len(pos) else 0.0, threshold


# -- input model ---------------------------------------------------------------------------------
def input_rows(corpus: SecurityCorpus) -> tuple[list[str], list[int], list[str], list[str]]:
    texts, labels, groups, kinds = [], [], [], []
    for example in corpus.prompts_in("train"):
        texts.append(example.text)
        labels.append(example.label)
        groups.append(example.group)
        kinds.append(f"attack:{example.dataset}" if example.label else "benign")
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


def method_weights(kinds: Sequence[str]) -> npt.NDArray[np.float64]:
    """Sample weights giving each attack method the same total weight (mean 1 over attacks);
    every other row weighs 1 (class balance is ``class_weight``'s job)."""
    methods = [k for k in kinds if k.startswith("attack:")]
    per_method = {m: methods.count(m) for m in set(methods)}
    share = len(methods) / max(len(per_method), 1)
    return np.array([share / per_method[k] if k in per_method else 1.0 for k in kinds])


def train_input(corpus: SecurityCorpus, grid: Sequence[float]) -> dict[str, object]:
    texts, label_list, groups, kinds = input_rows(corpus)
    matrix = vectors(texts)
    labels = np.array(label_list)
    folds = np.array([fold_of(g) for g in groups])
    kind = np.array([k.split(":")[0] for k in kinds])
    weights = method_weights(kinds)
    best: tuple[float, float, npt.NDArray[np.float64]] | None = None
    cv: dict[str, float] = {}
    for c in grid:
        oof = np.zeros(len(texts))
        for k in range(FOLDS):
            train = folds != k
            model = fit(matrix[train], labels[train], c, weights[train])
            oof[folds == k] = model.decision_function(matrix[folds == k])
        # against the prompts the threshold is calibrated on (XSTest safe + WildGuard benign)
        recall, _ = recall_at_fpr(oof[kind == "attack"], oof[kind == "benign"], INPUT_TARGET_FPR)
        cv[f"C={c:g}"] = round(recall, 4)
        print(f"  input  C={c:<6g} CV recall@{INPUT_TARGET_FPR:.1%}FPR {recall:.3f}", flush=True)
        if best is None or recall > best[1]:
            best = (c, recall, oof)
    assert best is not None
    c, recall, oof = best
    model = fit(matrix, labels, c, weights)
    return {
        "task": "jailbreak / prompt-injection attempt in a user prompt (whole text)",
        "C": c,
        "attack_weighting": "each attack method the same total weight",
        "cv_target_fpr": INPUT_TARGET_FPR,
        "cv_recall_at_target_fpr": round(recall, 4),
        "cv_by_C": cv,
        "bias": float(model.intercept_[0]),
        "weights_array": model.coef_[0].astype(np.float32),
        "out_of_fold_benign": [
            (text, float(logit))
            for text, logit, k in zip(texts, oof, kind, strict=True)
            if k == "benign"
        ],
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


# -- calibration ---------------------------------------------------------------------------------
def rule_miss(view: str, direction: str) -> float:
    """``1 - attack_score`` of the rules' findings on a detection view (1.0: no finding)."""
    rules = InjectionRules() if direction == "input" else IndirectInjectionRules()
    context = InspectionContext(direction=direction)  # type: ignore[arg-type]
    return 1.0 - attack_score(rules.inspect(view, context))


def critical_threshold(logits: npt.NDArray[np.float64], miss: float) -> float:
    """The highest model threshold at which the guard still acts on this text (score >= 0.5).

    The model's findings share one rule id, so they count once, at the strongest (the best
    logit ``m``): the guard's score is ``1 - miss * (1 - sigmoid(m - t))`` when that finding
    reaches ``REPORT_FLOOR``, else ``1 - miss``. It acts while ``sigmoid(m - t)`` is at least
    ``max(REPORT_FLOOR, 1 - 0.5 / miss)``. ``inf``: the rules alone reach 0.5; ``-inf``:
    nothing to score.
    """
    if miss <= 0.5:
        return math.inf
    if logits.shape[0] == 0:
        return -math.inf
    needed = max(REPORT_FLOOR, 1.0 - 0.5 / miss)
    return float(logits.max()) - math.log(needed / (1.0 - needed))


def conformal_allowance(n: int, target_fpr: float) -> int:
    """The most of ``n`` held-out benign texts that may be flagged so that the expected rate on
    a new one, ``(k + 1) / (n + 1)``, stays at most ``target_fpr`` (-1: none can be)."""
    return math.floor(target_fpr * (n + 1)) - 1


def calibrate(
    model: LinearTextModel,
    direction: str,
    positives: Sequence[str],
    negatives: Sequence[str],
    everyday: Sequence[str] = (),
    out_of_fold: Sequence[tuple[str, float]] = (),
) -> dict[str, object]:
    """The operating threshold (see the module docstring) and the validation figures there.

    ``negatives``, ``positives`` and ``everyday`` are validation texts scored by ``model``;
    ``out_of_fold`` are training benign texts with the logit of the cross-validation model that
    did not see them. With ``out_of_fold`` (input), the threshold keeps the expected rate on
    unseen benign texts at most ``INPUT_TARGET_FPR``; without (context), at most
    ``TARGET_FPR`` of ``negatives`` are flagged.
    """

    def critical(text: str, logit: float | None = None) -> float:
        view = normalize(text).text
        if direction == "input":
            if logit is None and view.strip():
                logit = model.logit(view)
            logits = np.array([logit]) if logit is not None else np.zeros(0)
        else:
            logits = model.segment_logits(view, sentence_spans(view))
        return critical_threshold(logits, rule_miss(view, direction))

    def ceiling(scores: npt.NDArray[np.float64], allowed: int) -> float:
        if not len(scores):
            return -math.inf
        ordered = np.sort(scores)[::-1]
        highest = float(ordered[min(allowed, len(ordered) - 1)]) if allowed >= 0 else math.inf
        if not math.isfinite(highest):
            raise SystemExit(
                f"{direction}: no threshold keeps {allowed} benign texts or fewer flagged"
            )
        return highest

    neg = np.array([critical(t) for t in negatives])
    daily = np.array([critical(t) for t in everyday])
    pooled = np.concatenate([neg, [critical(t, logit) for t, logit in out_of_fold]])
    if out_of_fold:
        target = INPUT_TARGET_FPR
        allowed = conformal_allowance(len(pooled), target)
        public_ceiling = ceiling(pooled, allowed)
    else:
        target = TARGET_FPR
        public_ceiling = ceiling(neg, math.floor(target * len(neg)))
    everyday_ceiling = ceiling(daily, math.floor(EVERYDAY_TARGET_FPR * len(daily)))
    threshold = max(public_ceiling, everyday_ceiling) + 1e-6
    pos = np.array([critical(t) for t in positives])
    figures: dict[str, object] = {
        "split": "validation",
        "target_fpr": target,
        "benign": len(neg),
        "attacks": len(pos),
        "fpr": round(float((neg >= threshold).mean()), 4),
        "recall": round(float((pos >= threshold).mean()), 4),
    }
    if out_of_fold:
        flagged = int((pooled >= threshold).sum())
        figures["budget_fpr"] = TARGET_FPR
        figures["pooled"] = {
            "benign": len(pooled),
            "of_which_out_of_fold_training": len(out_of_fold),
            "flagged": flagged,
            "expected_fpr": round((flagged + 1) / (len(pooled) + 1), 4),
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
        out_of_fold = result.pop("out_of_fold_benign", [])
        assert isinstance(out_of_fold, list)
        weights = result.pop("weights_array")
        assert isinstance(weights, np.ndarray)
        encoded = encode_weights(weights)
        runtime = LinearTextModel(
            name, SPEC, decode_weights(encoded, 1 << SPEC.bits), float(str(result["bias"])), 0.0
        )
        calibrated = calibrate(runtime, name, *held_out[name], out_of_fold=out_of_fold)
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
