"""IDNA2008 U-labels (RFC 5890-5893) checked with the standard library alone.

Python's ``idna`` codec is IDNA2003, which maps some labels to other domains
("straße" to "strasse"); the ``idna`` package does IDNA2008 but is not a
runtime dependency.  So a non-ASCII domain label is checked here with
``unicodedata`` and converted to its A-label with the ``punycode`` codec
(addresses.py).  The check errs on the safe side: characters whose validity
needs context (RFC 5892 Appendix A) are refused.
"""

from __future__ import annotations

import re
import unicodedata

#: RFC 5321 §4.1.2 Ldh-str characters: the ASCII an internationalised label may keep.
_LDH_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
# Instead of the RFC 5892 tables: letters, marks and digits that NFKC and case folding leave
# alone (RFC 5892 §2.1 LetterDigits, §2.2 Unstable), less the exceptions below.
_U_LABEL_CATEGORIES = frozenset({"Ll", "Lu", "Lo", "Lm", "Mn", "Mc", "Nd"})
#: RFC 5892 §2.6 Exceptions that are PVALID although case folding changes them ("ß", final sigma) or their
#: category is not a letter or digit.
_U_LABEL_PVALID = frozenset("\u00df\u03c2\u06fd\u06fe\u0f0b\u3007")
#: Code points a letter/mark/digit test would let through but RFC 5892 disallows: the §2.6 DISALLOWED
#: exceptions, default-ignorable marks (§2.3), the ignorable blocks (§2.4) and Old Hangul Jamo (§2.9).
_U_LABEL_DISALLOWED = (
    (0x0640, 0x0640), (0x07FA, 0x07FA), (0x302E, 0x302F), (0x3031, 0x3035), (0x303B, 0x303B),
    (0x1100, 0x11FF), (0xA960, 0xA97F), (0xD7B0, 0xD7FF),
    (0x034F, 0x034F), (0x17B4, 0x17B5), (0x180B, 0x180F), (0xFE00, 0xFE0F), (0xE0100, 0xE01EF),
    (0x20D0, 0x20FF), (0x1D100, 0x1D24F),
)
#: Ideographic, fullwidth and halfwidth full stops, typed for '.' with some input methods (RFC 3490 §3.1).
_FULL_STOPS = frozenset("\u3002\uff0e\uff61")
#: RFC 5892 Appendix A.8/A.9: Arabic-Indic and Extended Arabic-Indic digits must not be mixed in a label.
_ARABIC_INDIC = re.compile("[\u0660-\u0669]")
_EXTENDED_ARABIC_INDIC = re.compile("[\u06f0-\u06f9]")
#: RFC 5893 §2, the Bidi rule, for a label holding a right-to-left character.
_RTL_CLASSES = frozenset({"R", "AL", "AN"})
_RTL_ALLOWED = frozenset({"R", "AL", "AN", "EN", "ES", "CS", "ET", "ON", "BN", "NSM"})
_LTR_ALLOWED = frozenset({"L", "EN", "ES", "CS", "ET", "ON", "BN", "NSM"})






def u_label_problem(label: str) -> str | None:
    """What keeps ``label`` from being an IDNA2008 U-label (RFC 5890 §2.3.2.1, RFC 5891 §4.2), or None."""
    if not unicodedata.is_normalized("NFC", label):
        return "it is not in Unicode NFC (RFC 5891 §5.3)"
    if label.startswith("-") or label.endswith("-"):
        return "it begins or ends with '-' (RFC 5891 §4.2.3.1)"
    if label[2:4] == "--":
        return "it has '--' in its third and fourth places (RFC 5891 §4.2.3.1)"
    if unicodedata.category(label[0]).startswith("M"):
        return "it begins with a combining mark (RFC 5891 §4.2.3.2)"
    for char in label:
        if char.isascii():
            if char in _LDH_CHARS and not char.isupper():
                continue
            if char.isupper():
                return f"it has the upper-case {char!r}; write the label in lower case (RFC 5892 §2.2)"
            return f"it has the character {char!r} (RFC 5892)"
        point = ord(char)
        allowed = char in _U_LABEL_PVALID or (
            unicodedata.category(char) in _U_LABEL_CATEGORIES
            and unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", char).casefold()) == char
            and not any(low <= point <= high for low, high in _U_LABEL_DISALLOWED))
        if not allowed:
            if char in _FULL_STOPS:  # UTS #46 maps these to "." for lookup; on the wire they are not dots
                return f"it has the full stop {char!r}; separate labels with '.'"
            if char.lower() != char:
                return f"it has the upper-case {char!r}; write the label in lower case (RFC 5892 §2.2)"
            return f"it has {char!r} (U+{point:04X}), which IDNA2008 does not allow (RFC 5892)"
    if _ARABIC_INDIC.search(label) and _EXTENDED_ARABIC_INDIC.search(label):
        return "it mixes Arabic-Indic and Extended Arabic-Indic digits (RFC 5892 Appendix A.8)"
    return _bidi_problem(label)


def _bidi_problem(label: str) -> str | None:
    """RFC 5893 §2, the Bidi rule, for a label holding right-to-left characters; None when it holds."""
    classes = [unicodedata.bidirectional(char) for char in label]
    if not _RTL_CLASSES.intersection(classes):
        return None
    rule = "violates the Bidi rule (RFC 5893 §2)"
    ending = [cls for cls in classes if cls != "NSM"]
    if classes[0] in ("R", "AL"):
        if not _RTL_ALLOWED.issuperset(classes) or ("EN" in classes and "AN" in classes):
            return f"it {rule}: mixed directions or digits in a right-to-left label"
        if not ending or ending[-1] not in ("R", "AL", "EN", "AN"):
            return f"it {rule}: a right-to-left label must end in a right-to-left letter or a digit"
        return None
    if classes[0] == "L" and _LTR_ALLOWED.issuperset(classes) and ending and ending[-1] in ("L", "EN"):
        return None
    return f"it {rule}: right-to-left characters in a label that does not begin with one"
