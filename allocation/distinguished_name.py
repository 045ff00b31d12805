"""Parse distinguished-name strings as DPS and .NET print them into cryptography's x509.Name.

cryptography's own Name.from_rfc4514_string is strict RFC 4514 (no spaces after commas, no
quoted values, no `;`), while certificate info objects come as "CN=dev, O=\"Contoso, Ltd\"".
This parser accepts RFC 4514 and the RFC 1779 / .NET leniencies, and nothing ambiguous.
"""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

from app_errors import BadInput

MAX_DN_LENGTH = 4096

_KEYWORDS: dict[str, ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME,
    "SERIALNUMBER": NameOID.SERIAL_NUMBER,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "C": NameOID.COUNTRY_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "S": NameOID.STATE_OR_PROVINCE_NAME,
    "STREET": NameOID.STREET_ADDRESS,
    "DC": NameOID.DOMAIN_COMPONENT,
    "UID": NameOID.USER_ID,
    "E": NameOID.EMAIL_ADDRESS,
    "EMAIL": NameOID.EMAIL_ADDRESS,
    "EMAILADDRESS": NameOID.EMAIL_ADDRESS,
    "T": NameOID.TITLE,
    "TITLE": NameOID.TITLE,
    "G": NameOID.GIVEN_NAME,
    "GN": NameOID.GIVEN_NAME,
    "GIVENNAME": NameOID.GIVEN_NAME,
    "SN": NameOID.SURNAME,
    "DNQUALIFIER": NameOID.DN_QUALIFIER,
    "POSTALCODE": NameOID.POSTAL_CODE,
}

# DER string types that may follow '#' in a DN value, and how their bytes decode.
_DER_STRING_CODECS = {
    0x0C: "utf-8",  # UTF8String
    0x13: "ascii",  # PrintableString
    0x16: "ascii",  # IA5String
    0x14: "latin-1",  # TeletexString, treated as Latin-1 as most toolkits do
    0x1E: "utf-16-be",  # BMPString
    0x1C: "utf-32-be",  # UniversalString
}

_DOTTED_OID = re.compile(r"[0-9]+(?:\.[0-9]+)+")
_SPECIAL = set(',=+<>#;\\" ')
_HEX = set("0123456789abcdefABCDEF")


class DistinguishedNameError(BadInput, ValueError):
    """The text is not a distinguished name we can read without guessing."""


def parse_distinguished_name(text: str) -> x509.Name:
    """Parse "CN=dev-1, O=Contoso+OU=Lab" (most specific first) into an x509.Name."""
    if len(text) > MAX_DN_LENGTH:
        raise DistinguishedNameError(f"longer than {MAX_DN_LENGTH} characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DistinguishedNameError("contains characters that are not valid Unicode") from exc
    if not text.strip():
        return x509.Name([])
    parser = _Parser(text)
    rdns = parser.parse()
    try:
        # Strings list the most specific RDN first; ASN.1 (and x509.Name) the reverse.
        return x509.Name([x509.RelativeDistinguishedName(rdn) for rdn in reversed(rdns)])
    except ValueError as exc:
        raise DistinguishedNameError(str(exc)) from exc


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def parse(self) -> list[list[x509.NameAttribute[str]]]:
        rdns: list[list[x509.NameAttribute[str]]] = []
        while True:
            rdns.append(self._rdn())
            self._skip_spaces()
            if self._at_end():
                return rdns
            separator = self.text[self.pos]
            if separator not in ",;":
                raise self._error(f"expected ',' between RDNs, found {separator!r}")
            self.pos += 1

    def _rdn(self) -> list[x509.NameAttribute[str]]:
        attributes = [self._attribute()]
        while not self._at_end() and self.text[self.pos] == "+":
            self.pos += 1
            attributes.append(self._attribute())
        return attributes

    def _attribute(self) -> x509.NameAttribute[str]:
        oid = self._attribute_type()
        self._skip_spaces()
        if self._at_end() or self.text[self.pos] != "=":
            raise self._error("expected '=' after the attribute type")
        self.pos += 1
        self._skip_spaces()
        value = self._value()
        try:
            return x509.NameAttribute(oid, value)
        except ValueError as exc:
            raise DistinguishedNameError(f"{oid.dotted_string}: {exc}") from exc

    def _attribute_type(self) -> ObjectIdentifier:
        self._skip_spaces()
        start = self.pos
        while not self._at_end() and self.text[self.pos] not in "=,;+":
            self.pos += 1
        name = self.text[start : self.pos].strip()
        if not name:
            raise self._error("missing attribute type")
        upper = name.upper()
        if upper.startswith("OID."):
            name = name[4:].strip()
            if not _DOTTED_OID.fullmatch(name):
                raise self._error(f"bad object identifier {name!r}")
        if name[0].isdigit():  # any Unicode digit, so that '².5' is called what it is
            if not _DOTTED_OID.fullmatch(name):
                raise self._error(f"bad object identifier {name!r}")
            try:
                return ObjectIdentifier(name)
            except ValueError as exc:  # e.g. a first arc above 2
                raise self._error(f"bad object identifier {name!r}") from exc
        oid = _KEYWORDS.get(upper)
        if oid is None:
            raise self._error(f"unknown attribute type {name!r}")
        return oid

    def _value(self) -> str:
        if self._at_end():
            return ""
        if self.text[self.pos] == "#":
            return self._hex_value()
        if self.text[self.pos] == '"':
            return self._quoted_value()
        return self._plain_value()

    def _plain_value(self) -> str:
        raw = bytearray()
        trailing_spaces = 0  # unescaped trailing spaces are not part of the value
        while not self._at_end() and self.text[self.pos] not in ",;+":
            char = self.text[self.pos]
            if char == "\\":
                raw += self._escape()
                trailing_spaces = 0
                continue
            if char == '"':
                raise self._error("unescaped '\"' inside a value")
            raw += char.encode("utf-8")
            trailing_spaces = trailing_spaces + 1 if char == " " else 0
            self.pos += 1
        if trailing_spaces:
            del raw[-trailing_spaces:]
        return self._decode(bytes(raw))

    def _quoted_value(self) -> str:
        self.pos += 1
        raw = bytearray()
        while True:
            if self._at_end():
                raise self._error("unterminated quoted value")
            char = self.text[self.pos]
            if char == "\\":
                raw += self._escape()
            elif char == '"':
                if self.text.startswith('""', self.pos):  # .NET doubles a quote inside quotes
                    raw += b'"'
                    self.pos += 2
                    continue
                self.pos += 1
                break
            else:
                raw += char.encode("utf-8")
                self.pos += 1
        self._skip_spaces()
        if not self._at_end() and self.text[self.pos] not in ",;+":
            raise self._error("unexpected text after a quoted value")
        return self._decode(bytes(raw))

    def _hex_value(self) -> str:
        self.pos += 1
        start = self.pos
        while not self._at_end() and self.text[self.pos] in _HEX:
            self.pos += 1
        digits = self.text[start : self.pos]
        self._skip_spaces()
        if (
            not digits
            or len(digits) % 2
            or (not self._at_end() and self.text[self.pos] not in ",;+")
        ):
            raise self._error("'#' must be followed by hex-encoded BER")
        return _decode_der_string(bytes.fromhex(digits))

    def _escape(self) -> bytes:
        self.pos += 1
        if self._at_end():
            raise self._error("dangling '\\' at the end")
        char = self.text[self.pos]
        pair = self.text[self.pos : self.pos + 2]
        if len(pair) == 2 and all(c in _HEX for c in pair):
            self.pos += 2
            return bytes.fromhex(pair)
        if char in _SPECIAL:
            self.pos += 1
            return char.encode("utf-8")
        raise self._error(f"invalid escape '\\{char}'")

    def _decode(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self._error("escaped bytes are not valid UTF-8") from exc

    def _skip_spaces(self) -> None:
        while not self._at_end() and self.text[self.pos] == " ":
            self.pos += 1

    def _at_end(self) -> bool:
        return self.pos >= len(self.text)

    def _error(self, message: str) -> DistinguishedNameError:
        return DistinguishedNameError(f"{message} (at character {self.pos + 1})")


def _decode_der_string(der: bytes) -> str:
    if len(der) < 2 or der[0] not in _DER_STRING_CODECS:
        raise DistinguishedNameError("'#' value is not a DER string type we read")
    length = der[1]
    offset = 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 3 or len(der) < 2 + count:
            raise DistinguishedNameError("'#' value has a bad DER length")
        length = int.from_bytes(der[2 : 2 + count], "big")
        offset = 2 + count
    if len(der) != offset + length:
        raise DistinguishedNameError("'#' value length does not match its content")
    try:
        return der[offset:].decode(_DER_STRING_CODECS[der[0]])
    except UnicodeDecodeError as exc:
        raise DistinguishedNameError("'#' value does not decode") from exc
