"""The labelled security corpus and its documented, seeded train/validation/test split.

Used by ``scripts/train_guard.py`` (which fits on ``train`` and calibrates the operating
threshold on ``validation``, for the input model with out-of-fold scores of ``train`` too)
and ``bench/guard_eval.py`` (which reports ``validation`` and ``test``); never imported by
the runtime guard. The data are the copies under
``data/security/`` (sources and licences in ``data/security/SOURCES.md``).

The split. Every example belongs to a *group*; a group goes wholly to one side, chosen by
``sha256("isthmus-guard-split-v1:" + dataset + ":" + group)`` — its first 8 bytes as a
fraction ``f``: ``f < 0.15`` is validation, ``0.15 <= f < 0.30`` is test, the rest (70%) is
train. So the split is the same on every machine, needs no random state, and is stable when
files gain rows. (Until the threshold was calibrated, ``f < 0.30`` was one held-out side; the
training side is unchanged.) Nothing is ever fitted or tuned on ``test``.

- JailbreakBench (attack, direction ``input``): the group is the *behavior* (e.g.
  "Defamation"); the same goal appears in all five artifact files (JBC, PAIR x2, random search
  x2), so a goal seen in training never reappears in validation reworded by another method.
  Every submitted prompt is an attack, whether or not it jailbroke the target model.
- XSTest *safe* prompts and WildGuard benign prompts (benign, ``input``): the group is the
  prompt. XSTest's *unsafe* prompts are plain harmful questions, not jailbreaks: they are
  neither trained on nor counted, and the bench reports their flag rate for information only.
- Everyday traffic (benign, ``input``; ``data/security/everyday/prompts.jsonl``, written for
  Isthmus): ordinary assistant requests — writing, e-mail, code, SQL, summaries, translation,
  analysis, planning, personas ("act as my tutor"), follow-ups ("ignore my last message, I
  meant Tuesday"). The group is the prompt's *template* (``group`` in the file: variants of
  one way of asking), so a phrasing trained on never reappears filled differently on a
  held-out side. Kept apart from ``prompts`` (``SecurityCorpus.everyday``): the bench reports
  its false-positive rate on its own, beside XSTest + WildGuard.
- BIPIA (``context``): attack strings grouped by their text; clean contexts (e-mail, table,
  code) grouped by their text. Validation positives insert *validation* attacks into
  *validation* contexts (text attacks into e-mails and tables, code attacks into code
  answers), at the start, middle (at a line or sentence boundary) or end, chosen by a seeded
  ``random.Random``; validation negatives are the clean validation contexts. The same for test.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "HELD_OUT_PLANTING",
    "SPLIT_SEED",
    "TEST_FRACTION",
    "VALIDATION_FRACTION",
    "Attack",
    "Context",
    "Example",
    "SecurityCorpus",
    "default_data_dir",
    "insert_attack",
    "load_corpus",
]

SPLIT_SEED = "isthmus-guard-split-v1"
VALIDATION_FRACTION = 0.15
TEST_FRACTION = 0.15
HELD_OUT_PLANTING: dict[str, int] = {"per_attack": 6, "seed": 7}
"""How the held-out sides plant attacks (``planted_contexts``): calibration and bench agree."""
Split = Literal["train", "validation", "test"]


def default_data_dir() -> Path:
    """``data/security`` at the repository root."""
    return Path(__file__).resolve().parents[2] / "data" / "security"


def split_of(dataset: str, group: str) -> Split:
    """The side a group falls on (see the module docstring)."""
    digest = hashlib.sha256(f"{SPLIT_SEED}:{dataset}:{group}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    if fraction < VALIDATION_FRACTION:
        return "validation"
    if fraction < VALIDATION_FRACTION + TEST_FRACTION:
        return "test"
    return "train"


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled prompt for the input direction."""

    text: str
    label: int  # 1 = injection/jailbreak attempt, 0 = benign
    dataset: str
    split: Split
    group: str


@dataclass(frozen=True, slots=True)
class Attack:
    """A BIPIA attack string (an instruction to plant in data)."""

    text: str
    kind: Literal["text", "code"]
    category: str
    split: Split


@dataclass(frozen=True, slots=True)
class Context:
    """A clean BIPIA context (what a RAG system or tool would hand the model)."""

    text: str
    kind: Literal["email", "table", "code"]
    split: Split


@dataclass(frozen=True, slots=True)
class SecurityCorpus:
    prompts: tuple[Example, ...]
    xstest_unsafe: tuple[str, ...]
    attacks: tuple[Attack, ...]
    contexts: tuple[Context, ...]
    everyday: tuple[Example, ...] = ()

    def prompts_in(self, split: Split) -> list[Example]:
        return [e for e in self.prompts if e.split == split]

    def everyday_in(self, split: Split) -> list[Example]:
        return [e for e in self.everyday if e.split == split]

    def attacks_in(self, split: Split) -> list[Attack]:
        return [a for a in self.attacks if a.split == split]

    def contexts_in(self, split: Split) -> list[Context]:
        return [c for c in self.contexts if c.split == split]


def _jailbreakbench(root: Path) -> Iterator[Example]:
    for path in sorted((root / "jailbreakbench").glob("*.json")):
        data = json.loads(path.read_text())
        method = data["parameters"]["method"]
        for item in data["jailbreaks"]:
            prompt = item.get("prompt")
            if not prompt:
                continue
            group = str(item["behavior"])
            yield Example(
                prompt, 1, f"jailbreakbench/{method}", split_of("jailbreakbench", group), group
            )


def _benign(root: Path) -> tuple[list[Example], list[str]]:
    examples: list[Example] = []
    unsafe: list[str] = []
    with open(root / "benign" / "xstest_prompts.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["label"] == "safe":
                prompt = row["prompt"]
                examples.append(Example(prompt, 0, "xstest", split_of("xstest", prompt), prompt))
            else:
                unsafe.append(row["prompt"])
    for item in json.loads((root / "benign" / "wildguard_benign.json").read_text()):
        prompt = item["prompt"]
        examples.append(Example(prompt, 0, "wildguard", split_of("wildguard", prompt), prompt))
    return examples, unsafe


def _everyday(root: Path) -> list[Example]:
    examples: list[Example] = []
    with open(root / "everyday" / "prompts.jsonl") as handle:
        for line in handle:
            row = json.loads(line)
            group = str(row["group"])
            examples.append(
                Example(str(row["text"]), 0, "everyday", split_of("everyday", group), group)
            )
    return examples


def _context_text(kind: str, row: dict[str, object]) -> str:
    context = row["context"]
    if isinstance(context, list):
        return "\n".join(str(line) for line in context)
    return str(context)


def _bipia(root: Path) -> tuple[list[Attack], list[Context]]:
    attacks: list[Attack] = []
    for kind, name in (("text", "text_attack_train.json"), ("code", "code_attack_train.json")):
        for category, items in json.loads((root / "bipia" / name).read_text()).items():
            for text in items:
                attacks.append(
                    Attack(text, kind, category, split_of("bipia-attack", text))  # type: ignore[arg-type]
                )
    contexts: list[Context] = []
    for kind in ("email", "table", "code"):
        with open(root / "bipia" / f"{kind}_train.jsonl") as handle:
            for line in handle:
                text = _context_text(kind, json.loads(line))
                if text.strip():
                    contexts.append(
                        Context(text, kind, split_of("bipia-context", text))  # type: ignore[arg-type]
                    )
    return attacks, contexts


def load_corpus(root: Path | None = None) -> SecurityCorpus:
    """Read every labelled file under ``root`` (default ``data/security``)."""
    base = root or default_data_dir()
    benign, unsafe = _benign(base)
    attacks, contexts = _bipia(base)
    return SecurityCorpus(
        tuple([*_jailbreakbench(base), *benign]),
        tuple(unsafe),
        tuple(attacks),
        tuple(contexts),
        tuple(_everyday(base)),
    )


def insert_attack(context: str, attack: str, where: Literal["start", "middle", "end"]) -> str:
    """``context`` with ``attack`` planted at its start, end, or a boundary near its middle."""
    if where == "start":
        return f"{attack}\n{context}"
    if where == "end":
        return f"{context}\n{attack}"
    middle = len(context) // 2
    cut = context.find("\n", middle)
    if cut < 0:
        cut = context.find(". ", middle)
        cut = cut + 1 if cut >= 0 else len(context)
    return f"{context[:cut]}\n{attack}\n{context[cut:].lstrip(chr(10))}"


def planted_contexts(
    corpus: SecurityCorpus, split: Split, per_attack: int, seed: int
) -> list[tuple[str, Attack, Context]]:
    """Each attack of ``split`` planted in ``per_attack`` contexts of ``split`` of its kind."""
    rng = random.Random(seed)
    positions: tuple[Literal["start", "middle", "end"], ...] = ("start", "middle", "end")
    pools = {
        kind: [c for c in corpus.contexts_in(split) if c.kind == kind]
        for kind in ("email", "table", "code")
    }
    out: list[tuple[str, Attack, Context]] = []
    for i, attack in enumerate(corpus.attacks_in(split)):
        if attack.kind == "code":
            chosen = rng.sample(pools["code"], min(per_attack, len(pools["code"])))
        else:  # text attacks: half in e-mails, half in tables
            half = (per_attack + 1) // 2
            chosen = rng.sample(pools["email"], min(half, len(pools["email"])))
            chosen += rng.sample(pools["table"], min(per_attack - half, len(pools["table"])))
        for j, context in enumerate(chosen):
            where = positions[(i + j) % 3]
            out.append((insert_attack(context.text, attack.text, where), attack, context))
    return out
