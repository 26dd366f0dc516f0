"""A DNS responder on 127.0.0.1 for the MX tests: dnspython parses the questions and builds the answers.

Records are given as text, ``{("example.org", "MX"): ["10 mx1.example.org."], ...}``; a name
that has no record at all is NXDOMAIN, a name with records of other types answers NoAnswer.
UDP only (the answers are small); one thread, stopped by ``close()``.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Mapping, Sequence

import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

Records = Mapping[tuple[str, str], Sequence[str]]


class DNSResponder:
    def __init__(self, records: Records, servfail: frozenset[str] = frozenset()) -> None:
        self.records = {(dns.name.from_text(name), dns.rdatatype.from_text(kind)): list(texts)
                        for (name, kind), texts in records.items()}
        self.names = {name for name, _ in self.records}
        self.servfail = {dns.name.from_text(name) for name in servfail}  # names the server cannot answer for
        self.questions: list[tuple[str, str]] = []  # (name, type) in the order asked
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.host, self.port = "127.0.0.1", self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dns-responder", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():  # bounded by close(): each wait is 0.1 s
            if not select.select([self.sock], [], [], 0.1)[0]:
                continue
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            self.sock.sendto(self.answer(data), peer)

    def answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        question = query.question[0]
        self.questions.append((question.name.to_text(omit_final_dot=True), dns.rdatatype.to_text(question.rdtype)))
        texts = self.records.get((question.name, question.rdtype))
        if question.name in self.servfail and question.rdtype != dns.rdatatype.MX:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif texts:
            response.answer.append(dns.rrset.from_text_list(question.name, 60, dns.rdataclass.IN,
                                                            question.rdtype, texts))
        elif question.name not in self.names:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()

    def __enter__(self) -> DNSResponder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
