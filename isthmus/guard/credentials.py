"""Secrets: well-known credential formats, private key blocks, JWTs, and high-entropy tokens.

Invariants: a known format is reported with its kind (``secret:aws_access_key``, …) and score
0.99; a private key block is reported from its ``BEGIN`` line to its ``END`` line, or to the
end of the text when the block is still open (a stream that has not finished sending it);
a token is reported as ``secret:high_entropy`` only if it is at least ``MIN_ENTROPY_LENGTH``
characters of one run, mixes letters and digits, and its Shannon entropy is at least
``MIN_ENTROPY_BITS`` bits per character — hex digests (at most 4 bits) and UUIDs stay quiet.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from isthmus.guard.findings import Finding, InspectionContext
from isthmus.guard.prefilter import Prefilter

__all__ = ["MIN_ENTROPY_BITS", "MIN_ENTROPY_LENGTH", "SecretInspector", "shannon_entropy"]

MIN_ENTROPY_LENGTH = 24
MIN_ENTROPY_BITS = 4.0

_KNOWN: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("aws_access_key", re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}(?![A-Z0-9])")),
    (
        "aws_secret_key",
        re.compile(
            r"(?i)\baws[\w .-]{0,20}?(?:secret|sk)[\w .-]{0,20}?['\"]?\s*[:=]\s*['\"]?"
            r"(?P<value>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
        ),
    ),
    ("github_token", re.compile(r"(?<![\w])(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255}(?![\w])")),
    ("github_token", re.compile(r"(?<![\w])github_pat_[A-Za-z0-9_]{60,255}(?![\w])")),
    ("slack_token", re.compile(r"(?<![\w-])xox[abposre]-[A-Za-z0-9-]{10,250}(?![\w-])")),
    (
        "slack_webhook",
        re.compile(
            r"https://hooks\.slack\.com/services/T[A-Za-z0-9_]+/B[A-Za-z0-9_]+/[A-Za-z0-9_]+"
        ),
    ),
    ("anthropic_key", re.compile(r"(?<![\w-])sk-ant-[A-Za-z0-9_-]{20,200}(?![\w-])")),
    (
        "openai_key",
        re.compile(r"(?<![\w-])sk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,200}(?![\w-])"),
    ),
    ("google_api_key", re.compile(r"(?<![\w-])AIza[0-9A-Za-z_-]{35}(?![\w-])")),
    ("stripe_key", re.compile(r"(?<![\w])(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{16,99}(?![\w])")),
    ("huggingface_token", re.compile(r"(?<![\w])hf_[A-Za-z0-9]{34,40}(?![\w])")),
    (
        "jwt",
        re.compile(
            r"(?<![\w-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}(?![\w-])"
        ),
    ),
    (
        "private_key",
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
            r"(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/=\s:,-]*\Z)"
        ),
    ),
    (
        "password_assignment",
        re.compile(
            r"(?i)\b(?:password|passwd|pwd|passphrase|api[_-]?key|secret[_-]?key|access[_-]?token)"
            r"\b['\"]?\s*[:=]\s*['\"]?(?P<value>[^\s'\"<>]{8,128})"
        ),
    ),
)

_NEEDLES: dict[str, tuple[str, ...]] = {
    "aws_access_key": ("AKIA", "ASIA", "ABIA", "ACCA"),
    "aws_secret_key": ("aws", "AWS", "Aws"),
    "github_token": ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    "slack_token": ("xox",),
    "slack_webhook": ("hooks.slack.com",),
    "anthropic_key": ("sk-ant-",),
    "openai_key": ("sk-",),
    "google_api_key": ("AIza",),
    "stripe_key": ("_live_", "_test_"),
    "huggingface_token": ("hf_",),
    "jwt": ("eyJ",),
    "private_key": ("PRIVATE KEY",),
    "password_assignment": ("=", ":"),
}
"""Literal substrings one of which a match must contain: a pattern is only tried when the
text holds one (most texts hold none, so most patterns never run)."""

_PREFILTER = Prefilter(((kind, pattern), _NEEDLES[kind]) for kind, pattern in _KNOWN)

_TOKEN = re.compile(rf"[A-Za-z0-9+/_=-]{{{MIN_ENTROPY_LENGTH},}}")


def shannon_entropy(text: str) -> float:
    """Bits per character of ``text``'s own character distribution."""
    if not text:
        return 0.0
    length = len(text)
    return -sum(n / length * math.log2(n / length) for n in Counter(text).values())


def _entropy_worthy(token: str) -> bool:
    if not (any(c.isdigit() for c in token) and any(c.isalpha() for c in token)):
        return False
    if not (any(c.isupper() for c in token) and any(c.islower() for c in token)):
        return False  # hex digests, lower-case slugs
    return shannon_entropy(token) >= MIN_ENTROPY_BITS


class SecretInspector:
    """Credentials by format, then by entropy (see the module invariants)."""

    name = "secrets"

    def inspect(self, text: str, context: InspectionContext) -> Sequence[Finding]:
        found: list[Finding] = []
        for kind, pattern in _PREFILTER.candidates(text):
            for match in pattern.finditer(text):
                start, end = match.span("value") if "value" in pattern.groupindex else match.span()
                if any(start < f.end and f.start < end for f in found):
                    continue
                score = 0.8 if kind == "password_assignment" else 0.99
                found.append(Finding(f"secret:{kind}", f"secret.{kind}", start, end, score))
        for match in _TOKEN.finditer(text):
            start, end = match.span()
            if any(start < f.end and f.start < end for f in found):
                continue
            if _entropy_worthy(match.group()):
                bits = shannon_entropy(match.group())
                found.append(
                    Finding(
                        "secret:high_entropy",
                        "secret.entropy",
                        start,
                        end,
                        min(1.0, bits / 6.0),
                        f"{bits:.2f} bits/char over {end - start} chars",
                    )
                )
        return sorted(found, key=lambda f: f.start)
