"""EHLO keywords -> :class:`Capabilities` (RFC 5321 §4.1.1.1 and the extension RFCs)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .replies import Reply


@dataclass(frozen=True)
class Capabilities:
    """What the server announced in its EHLO (or LHLO) reply, parsed.

    ``keywords`` maps each upper-cased keyword to its parameter string.  An
    empty ``Capabilities`` means none were announced (HELO, or before EHLO).
    """

    keywords: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    server_name: str = ""

    @classmethod
    def from_reply(cls, reply: Reply) -> Capabilities:
        keywords: dict[str, str] = {}
        for line in reply.lines[1:]:
            word, _, param = line.strip().partition(" ")
            if word:
                keywords[word.upper()] = param.strip()
        name = reply.lines[0].split(" ", 1)[0] if reply.lines else ""
        return cls(MappingProxyType(keywords), name)

    def __contains__(self, keyword: object) -> bool:
        return isinstance(keyword, str) and keyword.upper() in self.keywords

    def has_extn(self, name: str) -> bool:
        """Whether the keyword ``name`` was announced, in any case (smtplib's ``has_extn``)."""
        return name in self

    @property
    def pipelining(self) -> bool:
        """PIPELINING (RFC 2920) was announced."""
        return "PIPELINING" in self.keywords

    @property
    def starttls(self) -> bool:
        """STARTTLS (RFC 3207) was announced."""
        return "STARTTLS" in self.keywords

    @property
    def chunking(self) -> bool:
        """CHUNKING, BDAT (RFC 3030) was announced."""
        return "CHUNKING" in self.keywords

    @property
    def eightbitmime(self) -> bool:
        """8BITMIME (RFC 6152) was announced."""
        return "8BITMIME" in self.keywords

    @property
    def smtputf8(self) -> bool:
        """SMTPUTF8 (RFC 6531) was announced."""
        return "SMTPUTF8" in self.keywords

    @property
    def dsn(self) -> bool:
        """DSN (RFC 3461) was announced."""
        return "DSN" in self.keywords

    @property
    def enhanced_status_codes(self) -> bool:
        """ENHANCEDSTATUSCODES (RFC 2034) was announced."""
        return "ENHANCEDSTATUSCODES" in self.keywords

    @property
    def size(self) -> bool:
        """SIZE (RFC 1870) was announced."""
        return "SIZE" in self.keywords

    @property
    def max_size(self) -> int | None:
        """The SIZE limit, or None when no limit is announced (absent, bare SIZE or SIZE 0: RFC 1870 §4)."""
        value = self.keywords.get("SIZE", "")
        # isdigit() alone accepts "²": only ASCII digits are a number here.
        if not (value.isascii() and value.isdigit()) or int(value) == 0:
            return None
        return int(value)

    @property
    def auth_mechanisms(self) -> tuple[str, ...]:
        """The SASL mechanisms offered by ``AUTH`` (or the pre-RFC ``AUTH=`` form)."""
        value = self.keywords.get("AUTH")
        if value is None:
            for keyword, param in self.keywords.items():
                if keyword.startswith("AUTH="):
                    value = f"{keyword[5:]} {param}".strip()
                    break
        if not value:
            return ()
        return tuple(dict.fromkeys(word.upper() for word in value.split()))
