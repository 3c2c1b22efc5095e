"""Train the guard's two injection classifiers and write ``isthmus/guard/data/classifier.json``.

    .venv/bin/python scripts/train_guard.py [--data data/security] [--out PATH] [--quick]

Reproducible: the split is the seeded, hash-based one documented in ``isthmus.guard.corpus``
(validation = 30% of groups, never read here); folds for model selection are hash-based too;
logistic regression (scikit-learn, lbfgs) is deterministic. Same data, same artifact, on any
machine. scikit-learn is needed here only: the runtime reads the JSON with numpy.

Models (features: ``isthmus.guard.features``; binary hashed character 3–6-grams, 2**18
buckets, unit length):

- ``input``: positives = JailbreakBench prompts of training behaviors + those behaviors'
  plain goals (the harmful request without its wrapper); negatives = XSTest safe and WildGuard
  benign prompts of the training split + the training BIPIA contexts as whole documents (users
  paste documents; length must not read as attack).
- ``context``: positives = sentences of training BIPIA attacks (for code attacks, the
  instruction line that introduces the code); negatives = every sentence of the training
  BIPIA contexts.

Selection: C from ``C_GRID`` by grouped 5-fold cross-validation on the training split (input:
recall at 1% FPR; context: document-level recall at 1% FPR with attacks planted in held-out
contexts). Threshold: the out-of-fold 99th percentile of benign scores (1% FPR on training
folds). The final model is refit on the whole training split.
"""

from __future__ import annotations

import argparse
import hashlib
import json
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

from isthmus.guard.classifier import encode_weights, sentence_spans  # noqa: E402
from isthmus.guard.corpus import (  # noqa: E402
    SPLIT_SEED,
    VALIDATION_FRACTION,
    SecurityCorpus,
    default_data_dir,
    load_corpus,
    planted_contexts,
)
from isthmus.guard.features import FeatureSpec, document_buckets  # noqa: E402
from isthmus.guard.normalize import normalize  # noqa: E402

SPEC = FeatureSpec(bits=18, ngram_sizes=(3, 4, 5, 6))
C_GRID = (3.0, 10.0, 30.0, 100.0)
FOLDS = 5
TARGET_FPR = 0.01


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
def input_rows(
    corpus: SecurityCorpus, goals: dict[str, str]
) -> tuple[list[str], list[int], list[str], list[str]]:
    texts, labels, groups, kinds = [], [], [], []
    for example in corpus.prompts_in("train"):
        texts.append(example.text)
        labels.append(example.label)
        groups.append(example.group)
        kinds.append("attack" if example.label else "benign")
    for behavior, goal in sorted(goals.items()):
        texts.append(goal)
        labels.append(1)
        groups.append(behavior)
        kinds.append("goal")
    for context in corpus.contexts_in("train"):
        texts.append(context.text)
        labels.append(0)
        groups.append(context.text)
        kinds.append("document")
    return texts, labels, groups, kinds


def train_input(corpus: SecurityCorpus, data_dir: Path, grid: Sequence[float]) -> dict[str, object]:
    goals: dict[str, str] = {}
    for path in sorted((data_dir / "jailbreakbench").glob("*.json")):
        for item in json.loads(path.read_text())["jailbreaks"]:
            goals[str(item["behavior"])] = str(item["goal"])
    train_behaviors = {e.group for e in corpus.prompts_in("train") if e.label == 1}
    goals = {b: g for b, g in goals.items() if b in train_behaviors}
    texts, label_list, groups, kinds = input_rows(corpus, goals)
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
        recall, _ = recall_at_fpr(
            oof[kind == "attack"], oof[(kind == "benign") | (kind == "document")]
        )
        cv[f"C={c:g}"] = round(recall, 4)
        print(f"  input  C={c:<6g} CV recall@1%FPR {recall:.3f}", flush=True)
        if best is None or recall > best[1]:
            best = (c, recall, oof)
    assert best is not None
    c, recall, oof = best
    _, threshold = recall_at_fpr(
        oof[kind == "attack"], oof[(kind == "benign") | (kind == "document")]
    )
    model = fit(matrix, labels, c)
    return {
        "task": "jailbreak / prompt-injection attempt in a user prompt (whole text)",
        "C": c,
        "cv_recall_at_1pct_fpr": round(recall, 4),
        "cv_by_C": cv,
        "threshold": threshold,
        "bias": float(model.intercept_[0]),
        "weights_array": model.coef_[0].astype(np.float32),
        "train_counts": {
            "attack_prompts": int((kind == "attack").sum()),
            "goals": int((kind == "goal").sum()),
            "benign_prompts": int((kind == "benign").sum()),
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


def train_context(corpus: SecurityCorpus, grid: Sequence[float]) -> dict[str, object]:
    attacks = corpus.attacks_in("train")
    contexts = corpus.contexts_in("train")
    texts: list[str] = []
    labels: list[int] = []
    groups: list[str] = []
    for attack in attacks:
        for sentence in attack_sentences(attack.text, attack.kind):
            texts.append(sentence)
            labels.append(1)
            groups.append(attack.text)
    for context in contexts:
        for s, e in sentence_spans(context.text):
            texts.append(context.text[s:e])
            labels.append(0)
            groups.append(context.text)
    matrix = vectors(texts)
    label_array = np.array(labels)
    folds = np.array([fold_of(g) for g in groups])
    planted = planted_contexts(corpus, "train", per_attack=6, seed=11)
    best: tuple[float, float, float] | None = None
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
        recall, threshold = recall_at_fpr(np.array(pos), np.array(neg))
        cv[f"C={c:g}"] = round(recall, 4)
        print(
            f"  context C={c:<6g} CV recall@1%FPR {recall:.3f} (n={len(pos)}/{len(neg)})",
            flush=True,
        )
        if best is None or recall > best[1]:
            best = (c, recall, threshold)
    assert best is not None
    c, recall, threshold = best
    model = fit(matrix, label_array, c)
    return {
        "task": "instruction aimed at the model inside a document / tool output (per sentence)",
        "C": c,
        "cv_recall_at_1pct_fpr": round(recall, 4),
        "cv_by_C": cv,
        "threshold": threshold,
        "bias": float(model.intercept_[0]),
        "weights_array": model.coef_[0].astype(np.float32),
        "train_counts": {
            "attack_sentences": int(label_array.sum()),
            "context_sentences": int((label_array == 0).sum()),
            "attacks": len(attacks),
            "contexts": len(contexts),
        },
    }


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
    trained: dict[str, Callable[[], dict[str, object]]] = {
        "input": lambda: train_input(corpus, args.data, grid),
        "context": lambda: train_context(corpus, grid),
    }
    models: dict[str, dict[str, object]] = {}
    for name, train in trained.items():
        result = train()
        weights = result.pop("weights_array")
        assert isinstance(weights, np.ndarray)
        models[name] = {
            **result,
            "features": SPEC.as_dict(),
            "weights_encoding": "float16 little-endian, zlib, base64",
            "weights": encode_weights(weights),
        }
    document = {
        "format": "isthmus-guard-classifier/1",
        "trainer": "scripts/train_guard.py",
        "scikit_learn": sklearn.__version__,
        "data_sha256": data_fingerprint(args.data),
        "split": {
            "seed": SPLIT_SEED,
            "validation_fraction": VALIDATION_FRACTION,
            "rule": "see isthmus.guard.corpus: sha256(seed:dataset:group) < fraction -> validation",
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
