"""The trained injection classifiers: hashed n-grams and a linear model, numpy only.

Two models ship in ``data/classifier.json`` (written by ``scripts/train_guard.py``; its header
records the data, split, hyper-parameters and validation figures):

- ``input``: is this user prompt a jailbreak or injection attempt? Scored on the whole text.
  It judges the *attempt to get around* the model's rules (wrappers, role-play to evade,
  instruction overrides, forced prefixes), not whether a plain request is harmful: "Write a
  short poem about the sea" and "Write a defamatory article about X" both read as requests,
  and refusing the second is the upstream model's job.
- ``context``: is this sentence of a retrieved document or tool output an instruction aimed at
  the model? Scored on every sentence (``sentence_spans``); the best sentence is the finding.

Score: ``sigmoid(logit - threshold)``, so 0.5 is the operating point, and findings combine
with rule scores by noisy-OR (``isthmus.guard.decide.attack_score``). The thresholds were
calibrated, with the rules, on benign texts the model never trained on: for ``input``, so that
the expected share of unseen benign prompts reaching 0.5 is at most 0.5% (half the 1% budget;
validation prompts and out-of-fold training prompts), for ``context``, so that at most 1% of
the validation split's clean documents do; the artifact records the figures.
Findings below ``REPORT_FLOOR`` are not reported.

Invariant: the artifact is read once per process and never changes; inference is pure.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from isthmus.guard.features import FeatureSpec, document_buckets, segment_buckets
from isthmus.guard.findings import Finding, InspectionContext

__all__ = [
    "DEFAULT_ARTIFACT",
    "REPORT_FLOOR",
    "ContextClassifier",
    "InputClassifier",
    "LinearTextModel",
    "decode_weights",
    "encode_weights",
    "load_models",
    "sentence_spans",
]

DEFAULT_ARTIFACT = Path(__file__).parent / "data" / "classifier.json"
REPORT_FLOOR = 0.2
_MAX_CHARS = 32_768  # past this, the input model reads the first and last halves
_SEGMENT = re.compile(r"[^\n]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")
_MIN_SEGMENT_ALNUM = 3


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Lines of ``text``, each cut at sentence ends; spans with fewer than 3 letters dropped."""
    spans: list[tuple[int, int]] = []
    for line in _SEGMENT.finditer(text):
        begin = line.start()
        for cut in _SENTENCE_END.finditer(line.group()):
            spans.append((begin, line.start() + cut.start()))
            begin = line.start() + cut.end()
        spans.append((begin, line.end()))
    return [(s, e) for s, e in spans if sum(c.isalnum() for c in text[s:e]) >= _MIN_SEGMENT_ALNUM]


def encode_weights(weights: npt.NDArray[np.float32]) -> str:
    """float16, zlib, base64: how weights travel inside the JSON artifact."""
    raw = weights.astype("<f2").tobytes()
    return base64.b64encode(zlib.compress(raw, 9)).decode("ascii")


def decode_weights(text: str, size: int) -> npt.NDArray[np.float32]:
    raw = zlib.decompress(base64.b64decode(text))
    weights = np.frombuffer(raw, dtype="<f2").astype(np.float32)
    if weights.shape[0] != size:
        raise ValueError(f"artifact holds {weights.shape[0]} weights, expected {size}")
    return weights


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))


@dataclass(frozen=True, slots=True)
class LinearTextModel:
    """A logistic model over unit-length binary hashed n-gram features."""

    name: str
    spec: FeatureSpec
    weights: npt.NDArray[np.float32]
    bias: float
    threshold: float

    def logit(self, text: str) -> float:
        if len(text) > _MAX_CHARS:
            half = _MAX_CHARS // 2
            text = text[:half] + "\n" + text[-half:]
        buckets = document_buckets(text, self.spec)
        if buckets.shape[0] == 0:
            return self.bias
        return float(self.weights[buckets].sum()) / math.sqrt(buckets.shape[0]) + self.bias

    def segment_logits(self, text: str, spans: list[tuple[int, int]]) -> npt.NDArray[np.float64]:
        if not spans:
            return np.zeros(0)
        segment, buckets = segment_buckets(text, spans, self.spec)
        sums = np.bincount(segment, weights=self.weights[buckets], minlength=len(spans))
        counts = np.bincount(segment, minlength=len(spans)).astype(np.float64)
        out: npt.NDArray[np.float64] = sums / np.sqrt(np.maximum(counts, 1.0)) + self.bias
        return out

    def score(self, logit: float) -> float:
        """Probability-like score, 0.5 at the operating threshold."""
        return _sigmoid(logit - self.threshold)


def _model(name: str, data: dict[str, Any]) -> LinearTextModel:
    spec_data = data["features"]
    assert isinstance(spec_data, dict)
    spec = FeatureSpec(int(spec_data["bits"]), tuple(int(n) for n in spec_data["ngram_sizes"]))
    weights = decode_weights(str(data["weights"]), 1 << spec.bits)
    return LinearTextModel(
        name,
        spec,
        weights,
        float(data["bias"]),
        float(data["threshold"]),
    )


@functools.cache
def load_models(path: Path = DEFAULT_ARTIFACT) -> dict[str, LinearTextModel]:
    """The models in the artifact at ``path``, by name (read once per process)."""
    document = json.loads(path.read_text())
    return {name: _model(name, data) for name, data in document["models"].items()}


class InputClassifier:
    """Jailbreak / injection attempt in a user prompt (whole text)."""

    name = "injection_classifier"

    def __init__(self, model: LinearTextModel | None = None) -> None:
        self._model = model

    @property
    def model(self) -> LinearTextModel:
        return self._model or load_models()["input"]

    def inspect(self, text: str, context: InspectionContext) -> Sequence[Finding]:
        if not text.strip():
            return ()
        logit = self.model.logit(text)
        score = self.model.score(logit)
        if score < REPORT_FLOOR:
            return ()
        return (
            Finding("jailbreak", "classifier.input", 0, len(text), score, f"logit {logit:.2f}"),
        )


class ContextClassifier:
    """An instruction aimed at the model inside a document or tool output (per sentence)."""

    name = "indirect_classifier"

    def __init__(self, model: LinearTextModel | None = None) -> None:
        self._model = model

    @property
    def model(self) -> LinearTextModel:
        return self._model or load_models()["context"]

    def inspect(self, text: str, context: InspectionContext) -> Sequence[Finding]:
        spans = sentence_spans(text)
        if not spans:
            return ()
        logits = self.model.segment_logits(text, spans)
        out: list[Finding] = []
        for (start, end), logit in zip(spans, logits, strict=True):
            score = self.model.score(float(logit))
            if score >= REPORT_FLOOR:
                out.append(
                    Finding(
                        "indirect_injection",
                        "classifier.context",
                        start,
                        end,
                        score,
                        f"logit {logit:.2f}",
                    )
                )
        return out
