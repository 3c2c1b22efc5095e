"""Output that would harm the system it is handed to: active markup, exfiltrating links, and
destructive SQL or shell in code meant to be run.

Invariant: each rule names what a downstream renderer or executor would do with the text
(run a script, follow a ``javascript:`` link, leak data in an image URL, drop a table, wipe a
disk); plain mentions in prose ("the <script> tag") are still reported, because the text is
judged by what it would do if rendered or executed, not by intent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from isthmus.guard.findings import Finding, InspectionContext
from isthmus.guard.prefilter import Prefilter

__all__ = ["UNSAFE_RULES", "UnsafeOutputInspector"]

UNSAFE_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("markup.script_tag", re.compile(r"(?i)<\s*script\b[^>]*>")),
    ("markup.event_handler", re.compile(r"(?i)<[a-z][^>]*\son[a-z]{3,20}\s*=\s*['\"]?[^'\"\s>]")),
    ("markup.javascript_url", re.compile(r"(?i)\b(?:javascript|vbscript)\s*:[^\s\"'<>]{2,}")),
    ("markup.data_html_url", re.compile(r"(?i)\bdata\s*:\s*(?:text/html|application/(?:x-)?javascript)")),
    ("markup.iframe_or_object", re.compile(r"(?i)<\s*(?:iframe|object|embed|frame|base)\b")),
    ("markup.meta_refresh", re.compile(r"(?i)<\s*meta[^>]+http-equiv\s*=\s*['\"]?refresh")),
    (
        "markup.image_exfiltration",
        re.compile(r"!\[[^\]]*\]\(\s*https?://[^)\s]+\?[^)\s]*=[^)\s]{16,}\)"),
    ),
    (
        "sql.destructive",
        re.compile(r"(?i)\b(?:drop\s+(?:table|database|schema)|truncate\s+table|delete\s+from\s+\w+\s*(?:;|$))"),
    ),
    ("sql.tautology", re.compile(r"(?i)'\s*(?:or|and)\s+'?\d+'?\s*=\s*'?\d+|'\s*or\s+'[^']*'\s*=\s*'|--\s*$|;\s*--")),
    ("sql.union_select", re.compile(r"(?i)\bunion\s+(?:all\s+)?select\b")),
    ("shell.rm_root", re.compile(r"\brm\s+-(?:[a-zA-Z]*r[a-zA-Z]*f|[a-zA-Z]*f[a-zA-Z]*r)[a-zA-Z]*\s+(?:--no-preserve-root\s+)?(?:/|~|\*|\$HOME)(?:\s|$|\*)")),
    ("shell.pipe_to_shell", re.compile(r"\b(?:curl|wget)\b[^\n|]*\|\s*(?:sudo\s+)?(?:ba|z|k)?sh\b")),
    ("shell.fork_bomb", re.compile(r":\(\)\s*\{\s*:\s*\|\s*:\s*&\s*\}\s*;\s*:")),
    ("shell.disk_wipe", re.compile(r"\b(?:mkfs(?:\.\w+)?\s+/dev/|dd\s+if=[^\n]*of=/dev/(?:sd|nvme|hd|xvd))")),
    ("shell.reverse_shell", re.compile(r"\b(?:nc|ncat|netcat)\b[^\n]*\s-e\s|/dev/tcp/\d|bash\s+-i\s+>&")),
    ("shell.chmod_world", re.compile(r"\bchmod\s+(?:-R\s+)?0?777\s+/(?:\s|$)")),
    ("code.eval_remote", re.compile(r"(?i)\b(?:eval|exec)\s*\(\s*(?:requests\.get|urllib\.request\.urlopen|fetch)\(")),
)  # fmt: skip

_NEEDLES: dict[str, tuple[str, ...]] = {
    "markup.script_tag": ("<",),
    "markup.event_handler": ("<",),
    "markup.javascript_url": ("script",),
    "markup.data_html_url": ("data",),
    "markup.iframe_or_object": ("<",),
    "markup.meta_refresh": ("<",),
    "markup.image_exfiltration": ("![",),
    "sql.destructive": ("drop", "truncate", "delete"),
    "sql.tautology": ("'", "--"),
    "sql.union_select": ("union",),
    "shell.rm_root": ("rm",),
    "shell.pipe_to_shell": ("|",),
    "shell.fork_bomb": (":(",),
    "shell.disk_wipe": ("mkfs", "if="),
    "shell.reverse_shell": ("-e", "/dev/tcp/", ">&"),
    "shell.chmod_world": ("chmod",),
    "code.eval_remote": ("eval", "exec"),
}
"""Literal substrings (of the lower-cased text) one of which every match of a rule contains:
a rule is only tried on a text that holds one, so most text runs few of the patterns."""
_PREFILTER = Prefilter(((rule, pattern), _NEEDLES[rule]) for rule, pattern in UNSAFE_RULES)


class UnsafeOutputInspector:
    """Active markup and dangerous code in model output (see the module invariant)."""

    name = "unsafe_output"

    def inspect(self, text: str, context: InspectionContext) -> Sequence[Finding]:
        out: list[Finding] = []
        lowered = text.lower()
        rules = (  # a few characters lower-case to two: then try every rule
            _PREFILTER.candidates(lowered) if len(lowered) == len(text) else _PREFILTER.items
        )
        for rule, pattern in rules:
            for match in pattern.finditer(text):
                out.append(Finding("unsafe_output", rule, match.start(), match.end(), 0.9))
        return out
