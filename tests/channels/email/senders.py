"""Test peers of the sender checks (channels/email/authenticity.py): a customer domain that
signs its mail with DKIM (a test key, dkimpy), and a small DNS server (UDP, dnspython) that
publishes its key and SPF record, since this machine has no outside network. The server is a
real one: `switchboard serve` asks it through `email.auth_dns_servers`."""

from __future__ import annotations

import base64
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid

import dkim
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

SELECTOR = "s1"


@dataclass
class SigningDomain:
    """A domain with an RSA key: signs messages, and says what its DNS publishes."""

    name: str
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(
        public_exponent=65537, key_size=2048))

    @property
    def private_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption())

    @property
    def record_name(self) -> str:
        return f"{SELECTOR}._domainkey.{self.name}"

    @property
    def record(self) -> bytes:
        der = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
        return b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)

    def sign(self, raw: bytes) -> bytes:
        sig = dkim.sign(raw, SELECTOR.encode(), self.name.encode(), self.private_pem,
                        include_headers=[b"from", b"to", b"subject", b"message-id", b"date"])
        return sig + raw

    def txt(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        """A dkimpy `dnsfunc` that knows only this domain's key."""
        qname = (name.decode() if isinstance(name, bytes) else name).rstrip(".")
        return self.record if qname == self.record_name else None


def message(sender: str, subject: str, text: str = "hello", to: str = "support@example.com",
            **headers: str) -> bytes:
    em = EmailMessage()
    em["From"] = sender
    em["To"] = to
    em["Subject"] = subject
    em["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].strip(">"))
    em["Date"] = "Fri, 04 Dec 2026 10:00:00 +0000"
    for name, value in headers.items():
        em[name.replace("_", "-")] = value
    em.set_content(text)
    return em.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class DnsServer:
    """Answers TXT questions from `records` (name -> strings); NXDOMAIN for other names,
    nothing at all for names in `silent` (a server that never answers)."""

    def __init__(self, records: dict[str, bytes], silent: set[str] | None = None) -> None:
        self.records = {k.rstrip(".").lower(): v for k, v in records.items()}
        self.silent = {s.rstrip(".").lower() for s in (silent or set())}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.asked: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except Exception:  # noqa: BLE001 - not DNS: ignored
                continue
            q = query.question[0]
            name = q.name.to_text().rstrip(".").lower()
            self.asked.append(name)
            if name in self.silent:
                continue
            response = dns.message.make_response(query)
            value = self.records.get(name)
            if value is not None and q.rdtype == dns.rdatatype.TXT:
                chunks = [value[i:i + 255] for i in range(0, len(value), 255)]
                text = " ".join('"' + c.decode() + '"' for c in chunks)
                response.answer.append(dns.rrset.from_text(q.name, 60, "IN", "TXT", text))
            elif not any(n == name for n in self.records):
                response.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(response.to_wire(), peer)

    def start(self) -> DnsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.sock.close()


@contextmanager
def dns_server(records: dict[str, bytes], silent: set[str] | None = None
               ) -> Iterator[DnsServer]:
    server = DnsServer(records, silent).start()
    try:
        yield server
    finally:
        server.stop()
