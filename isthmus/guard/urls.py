"""Links: allow and deny lists, IP literals, punycode, and look-alikes of protected domains.

Invariants: a host matches a list entry when it *is* the entry or a subdomain of it
(``mail.example.com`` matches ``example.com``; ``badexample.com`` does not). A host is a
look-alike of a protected domain when it is not that domain (nor a subdomain of it) but reads
the same after folding confusables — Cyrillic or Greek letters in the original text, punycode
decoded, ``0/1/3/5`` for ``o/l/e/s``, ``rn`` for ``m`` — or is one edit away from it. Every
finding has category ``url`` and a rule naming the reason.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from isthmus.guard.findings import Finding, InspectionContext
from isthmus.guard.normalize import normalize

__all__ = ["UrlInspector", "host_matches", "lookalike_of"]

_TLDS = (
    r"(?:com|net|org|info|biz|io|co|xyz|top|app|dev|online|site|club|shop|live|link|click|"
    r"zip|mov|ru|cn|tk|ml|ga|cf|gq|de|fr|uk|eu|us|ai)\b"
)
_URL = re.compile(
    r"(?i)\b(?:https?|ftp|wss?)://[^\s<>\"'`)\]}]+"
    r"|\bwww\.[^\s<>\"'`)\]}]+"
    r"|(?<![@\w./-])(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+" + _TLDS + r"(?:/[^\s<>\"'`)\]}]*)?"
)
_URL_MARK = re.compile(r"(?i)://|\bwww\.|\." + _TLDS)
"""What every ``_URL`` match holds — a scheme's ``://``, ``www.``, or a dot before a top-level
domain — and is cheaper to look for: a text without it has no link (most prose)."""
_SECOND_LEVEL = {"co", "com", "org", "net", "ac", "gov", "edu"}
_BAIT = ("login", "secure", "account", "verify", "support")
_DIGIT_FOLD = str.maketrans({"0": "o", "1": "l", "3": "e", "5": "s", "4": "a", "7": "t"})


def _host_of(url: str) -> tuple[str, bool]:
    """The host of ``url`` (lower-case, no port) and whether it had user info before it."""
    rest = url.split("://", 1)[1] if "://" in url else url
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    has_userinfo = "@" in authority
    authority = authority.rsplit("@", 1)[-1]
    if authority.startswith("["):
        return authority[1:].split("]", 1)[0].lower(), has_userinfo
    return authority.split(":", 1)[0].rstrip(".").lower(), has_userinfo


def host_matches(host: str, domains: frozenset[str]) -> bool:
    """Whether ``host`` is one of ``domains`` or a subdomain of one."""
    return any(host == d or host.endswith("." + d) for d in domains)


def _registrable(host: str) -> str:
    labels = host.split(".")
    if len(labels) >= 3 and labels[-2] in _SECOND_LEVEL and len(labels[-1]) == 2:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def _skeleton(host: str) -> str:
    folded = normalize(host).text.lower().translate(_DIGIT_FOLD)
    return folded.replace("rn", "m").replace("vv", "w")


def _within_one_edit(a: str, b: str) -> bool:
    if a == b or abs(len(a) - len(b)) > 1:
        return a == b
    if len(a) == len(b):
        diffs = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diffs) == 1:
            return True
        i = diffs[0] if len(diffs) == 2 else -1
        return len(diffs) == 2 and diffs[1] == i + 1 and a[i] == b[i + 1] and a[i + 1] == b[i]
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


def lookalike_of(host: str, protected: frozenset[str]) -> str | None:
    """The protected domain ``host`` imitates, if any (see the module invariants)."""
    if not protected or host_matches(host, protected):
        return None
    decoded = host
    if "xn--" in host:
        try:
            decoded = host.encode("ascii").decode("idna")
        except UnicodeError:
            decoded = host
    candidate = _registrable(decoded)
    skeleton = _skeleton(candidate)
    for domain in protected:
        target = _registrable(domain)
        if candidate == target:
            continue
        target_skeleton = _skeleton(target)
        if skeleton == target_skeleton:
            return domain
        label, target_label = skeleton.split(".")[0], target_skeleton.split(".")[0]
        if len(target_label) >= 5 and _within_one_edit(label, target_label):
            return domain
        suffix = label[len(target_label) :].lstrip("-")
        if len(target_label) >= 5 and label.startswith(target_label) and suffix in _BAIT:
            return domain
    return None


def _ip_literal(host: str) -> bool:
    if host.isdigit() or re.fullmatch(r"0x[0-9a-f]+", host):
        return True  # http://3232235777 and http://0xc0a80001 are addresses too
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class UrlInspector:
    """Links checked against the tenant's lists and for disguise (see the module invariants)."""

    name = "urls"

    def inspect(self, text: str, context: InspectionContext) -> Sequence[Finding]:
        if "." not in text and ":" not in text:
            return ()  # the cheapest look: no link without one of these
        if not _URL_MARK.search(text):
            return ()
        out: list[Finding] = []
        for match in _URL.finditer(text):
            url = match.group().rstrip(".,;:!?")
            start, end = match.start(), match.start() + len(url)
            host, userinfo = _host_of(url)
            if not host:
                continue
            original_host = host
            if context.source is not None and context.source.changed:
                o_start, o_end = context.source.origin_span(start, end)
                original_host, _ = _host_of(context.source.original[o_start:o_end])

            span = (start, end)

            def report(rule: str, score: float, detail: str, span: tuple[int, int] = span) -> None:
                out.append(Finding("url", f"url.{rule}", span[0], span[1], score, detail))

            if host_matches(host, context.deny_domains):
                report("denied", 1.0, "host is on the deny list")
            elif context.allow_domains and not host_matches(host, context.allow_domains):
                report("not_allowed", 0.9, "host is not on the allow list")
            if original_host != host and not original_host.isascii():
                report("homoglyph", 0.95, "host spelled with look-alike characters")
            elif (imitated := lookalike_of(host, context.protected_domains)) is not None:
                report("lookalike", 0.9, f"host imitates protected domain {imitated}")
            if _ip_literal(host):
                report("ip_literal", 0.6, "link to a bare IP address")
            if "xn--" in host:
                report("punycode", 0.6, "internationalised (punycode) host")
            if userinfo:
                report("userinfo", 0.8, "user info before the host hides the real destination")
        return out
