"""Unicode normalisation for detection, keeping the way back to the original text.

Every inspector sees the *detection view* of a text, never the raw text, so an attack cannot
hide behind characters a person does not see or cannot tell apart:

- characters with no visible form are removed: zero-width characters (U+200B–U+200D, U+2060,
  U+FEFF, …), bidirectional controls (U+200E/F, U+202A–U+202E, U+2066–U+2069), variation
  selectors (U+FE00–U+FE0F, U+E0100–U+E01EF), the soft hyphen, and tag characters
  (U+E0000–U+E007F); printable tag characters spell ASCII text invisibly ("ASCII smuggling"),
  so that text is decoded into ``hidden`` for inspection rather than thrown away;
- compatibility forms are folded (NFKC: fullwidth ``ｉｇｎｏｒｅ``, mathematical ``𝐢𝐠𝐧𝐨𝐫𝐞``,
  ligatures) and combining marks dropped (``ïgnöre`` -> ``ignore``);
- common Cyrillic and Greek look-alikes are mapped to the Latin letters they imitate.

Invariants: the view is a pure function of the text; ``origin_span`` maps any span of the view
back to the smallest span of the original that produced it, so redaction removes exactly the
original characters (invisible ones inside the span included). ASCII text — the common case —
is its own view and costs one ``str.isascii`` call.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass, field

__all__ = ["HOMOGLYPHS", "NormalizedText", "is_invisible", "normalize"]

HOMOGLYPHS: dict[str, str] = {
    # Cyrillic lower case
    "а": "a", "в": "b", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x",
    "і": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "һ": "h", "ԛ": "q", "ԝ": "w", "ӏ": "l",
    "к": "k", "м": "m", "н": "h", "т": "t", "ѡ": "w", "ү": "y", "ɡ": "g", "ո": "n",
    # Cyrillic upper case
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P",
    "С": "C", "Т": "T", "Х": "X", "У": "Y", "І": "I", "Ј": "J", "Ѕ": "S", "Ԁ": "D",
    "Ԛ": "Q", "Ԝ": "W", "Ӏ": "I", "Ү": "Y",
    # Greek
    "α": "a", "ο": "o", "ρ": "p", "ν": "v", "κ": "k", "ι": "i", "υ": "u", "ϲ": "c",
    "τ": "t", "χ": "x", "ε": "e", "η": "n", "ω": "w", "ϳ": "j",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
    "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
    # Latin extensions and symbols used as letters
    "ı": "i", "ȷ": "j", "ℓ": "l", "ǀ": "l", "ⅼ": "l", "ꓲ": "I",
}  # fmt: skip
"""Look-alike letters mapped to the Latin letter they imitate (applied after NFKC)."""

_INVISIBLE_RANGES: tuple[tuple[int, int], ...] = (
    (0x00AD, 0x00AD),  # soft hyphen
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x061C, 0x061C),  # Arabic letter mark (bidi)
    (0x115F, 0x1160),  # Hangul fillers
    (0x17B4, 0x17B5),  # Khmer inherent vowels (invisible)
    (0x180B, 0x180F),  # Mongolian variation selectors and vowel separator
    (0x200B, 0x200F),  # zero width space/non-joiner/joiner, LRM, RLM
    (0x202A, 0x202E),  # bidi embeddings and overrides
    (0x2060, 0x2064),  # word joiner, invisible operators
    (0x2066, 0x206F),  # bidi isolates, deprecated format characters
    (0x3164, 0x3164),  # Hangul filler
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFEFF, 0xFEFF),  # zero width no-break space (BOM)
    (0xFFA0, 0xFFA0),  # halfwidth Hangul filler
    (0x1BCA0, 0x1BCA3),  # shorthand format controls
    (0x1D173, 0x1D17A),  # musical format controls
    (0xE0000, 0xE007F),  # tag characters
    (0xE0100, 0xE01EF),  # variation selectors supplement
)
_TAG_FIRST, _TAG_LAST = 0xE0020, 0xE007E
_TAG_BLOCK_FIRST, _TAG_BLOCK_LAST = 0xE0000, 0xE007F


def is_invisible(char: str) -> bool:
    """True for a character the detection view removes (see the module docstring)."""
    code = ord(char)
    return any(lo <= code <= hi for lo, hi in _INVISIBLE_RANGES)


@functools.lru_cache(maxsize=8192)
def _fold(char: str) -> str:
    """The detection form of one visible non-ASCII character (cached: texts reuse few)."""
    if is_invisible(char):
        return ""
    if char in HOMOGLYPHS:
        return HOMOGLYPHS[char]
    folded = unicodedata.normalize("NFKC", char)
    out = []
    for part in unicodedata.normalize("NFKD", folded):
        if unicodedata.combining(part):
            continue
        out.append(HOMOGLYPHS.get(part, part))
    return unicodedata.normalize("NFC", "".join(out))


@dataclass(frozen=True, slots=True)
class NormalizedText:
    """A text's detection view, its decoded hidden tag text, and the map back to the original.

    ``pieces[i]`` is the length of the view produced by original character ``i`` (0 for a
    removed character); it is empty when the view *is* the original (plain ASCII).
    """

    original: str
    text: str
    hidden: str = ""
    pieces: tuple[int, ...] = ()
    _starts: list[int] = field(default_factory=list, repr=False, compare=False)

    @property
    def changed(self) -> bool:
        """Whether the view differs from the original (something was removed or folded)."""
        return bool(self.pieces)

    def _view_to_original(self) -> list[int]:
        # starts[j] = index in the original of the character that produced view character j
        if not self._starts:
            starts = self._starts
            for index, length in enumerate(self.pieces):
                starts.extend([index] * length)
        return self._starts

    def origin_span(self, start: int, end: int) -> tuple[int, int]:
        """The span of the original text that produced the view's ``[start, end)``."""
        if not self.pieces:
            return start, end
        if start >= end:
            position = (
                self._view_to_original()[start] if start < len(self.text) else len(self.original)
            )
            return position, position
        starts = self._view_to_original()
        # invisible characters inside the span are swallowed with it: they belong to the match
        return starts[start], starts[end - 1] + 1


def normalize(text: str) -> NormalizedText:
    """The detection view of ``text`` (pure; cheap for ASCII)."""
    if text.isascii():
        return NormalizedText(text, text)
    out: list[str] = []
    pieces: list[int] = []
    hidden: list[str] = []
    for char in text:
        if char.isascii():
            out.append(char)
            pieces.append(1)
            continue
        code = ord(char)
        if _TAG_BLOCK_FIRST <= code <= _TAG_BLOCK_LAST:
            if _TAG_FIRST <= code <= _TAG_LAST:
                hidden.append(chr(code - 0xE0000))
            pieces.append(0)
            continue
        folded = _fold(char)
        out.append(folded)
        pieces.append(len(folded))
    view = "".join(out)
    return NormalizedText(text, view, "".join(hidden), tuple(pieces))
