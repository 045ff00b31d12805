"""parse_distinguished_name: RFC 4514 strings plus the .NET / DPS leniencies, into x509.Name."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import example, given, settings
from hypothesis import strategies as st

from allocation.distinguished_name import (
    MAX_DN_LENGTH,
    DistinguishedNameError,
    parse_distinguished_name,
)

SERIALNUMBER_OVERRIDE = {NameOID.SERIAL_NUMBER: "SERIALNUMBER"}


def rdns(name: x509.Name) -> list[list[tuple[str, str | bytes]]]:
    """(dotted oid, value) per RDN in ASN.1 order (least specific first), sorted within an RDN."""
    return [
        sorted((attribute.oid.dotted_string, attribute.value) for attribute in rdn)
        for rdn in name.rdns
    ]


def single_value(text: str) -> str | bytes:
    """The value of a DN that must hold exactly one attribute."""
    [[(_, value)]] = rdns(parse_distinguished_name(text))
    return value


# --- RFC 4514 ------------------------------------------------------------------------------


def test_rdns_come_back_least_specific_first_as_in_asn1() -> None:
    name = parse_distinguished_name("CN=dev-1,OU=Line-A,O=Contoso,C=US")

    assert rdns(name) == [
        [("2.5.4.6", "US")],
        [("2.5.4.10", "Contoso")],
        [("2.5.4.11", "Line-A")],
        [("2.5.4.3", "dev-1")],
    ]


@pytest.mark.parametrize(
    "text",
    [
        "CN=dev-1,OU=Line-A,O=Contoso,C=US",
        "CN=dev-1+SERIALNUMBER=SN-1,O=Contoso",
        "CN=a\\,b,O=x\\+y,L=\\#hash,OU=trail\\ ",
    ],
)
def test_rfc4514_string_of_the_result_reproduces_the_input_order(text: str) -> None:
    assert parse_distinguished_name(text).rfc4514_string(SERIALNUMBER_OVERRIDE) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("O=Contoso\\, Ltd", "Contoso, Ltd"),
        ("O=a\\+b", "a+b"),
        ('O=say \\"hi\\"', 'say "hi"'),
        ("O=back\\\\slash", "back\\slash"),
        ("O=semi\\;colon", "semi;colon"),
        ("O=\\<angle\\>", "<angle>"),
        ("O=a\\=b", "a=b"),
        ("O=\\#not-hex", "#not-hex"),
        ("O=\\ leading", " leading"),
        ("O=trailing\\ ", "trailing "),
        ("O=\\ \\ ", "  "),
        ("O=\\ ", " "),
        ("O=a\\2Cb", "a,b"),
        ("O=nul\\00byte", "nul\x00byte"),
    ],
)
def test_escaped_specials_are_unescaped(text: str, expected: str) -> None:
    assert single_value(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CN=Gr\\C3\\BC\\C3\\9Fe", "Grüße"),
        ("CN=gr\\c3\\bc\\c3\\9fe", "grüße"),
        ("O=\\E4\\BC\\A0\\E6\\84\\9F", "传感"),
        ("O=\\F0\\9F\\9A\\80", "🚀"),
        ("O=mixed \\C3\\A9 and é", "mixed é and é"),
    ],
)
def test_hex_escapes_are_utf8_bytes(text: str, expected: str) -> None:
    assert single_value(text) == expected


@pytest.mark.parametrize("value", ["传感器-7", "東京工場", "🚀 rocket team", "Ünïcödé ßtraße"])
def test_raw_utf8_values_are_taken_as_they_are(value: str) -> None:
    assert single_value(f"OU={value}") == value


def test_unescaped_trailing_spaces_are_dropped_and_inner_spaces_kept() -> None:
    name = parse_distinguished_name("O=Contoso  Ltd   ,CN=dev-1   ")

    assert rdns(name) == [[("2.5.4.3", "dev-1")], [("2.5.4.10", "Contoso  Ltd")]]


def test_multi_valued_rdn_keeps_its_attributes_together() -> None:
    name = parse_distinguished_name("CN=dev-1+SERIALNUMBER=SN-1,O=Contoso")

    assert rdns(name) == [
        [("2.5.4.10", "Contoso")],
        [("2.5.4.3", "dev-1"), ("2.5.4.5", "SN-1")],
    ]


def test_multi_valued_rdn_may_repeat_a_type_with_different_values() -> None:
    assert rdns(parse_distinguished_name("OU=a+OU=b")) == [[("2.5.4.11", "a"), ("2.5.4.11", "b")]]


@pytest.mark.parametrize("text", ["2.5.4.5=ABC", "OID.2.5.4.5=ABC", "oid.2.5.4.5=ABC"])
def test_dotted_object_identifiers_name_the_attribute(text: str) -> None:
    assert rdns(parse_distinguished_name(text)) == [[("2.5.4.5", "ABC")]]


def test_unregistered_dotted_oid_is_kept_verbatim() -> None:
    assert rdns(parse_distinguished_name("1.3.6.1.4.1.311.60.2.1.3=US")) == [
        [("1.3.6.1.4.1.311.60.2.1.3", "US")]
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CN=#0C03616263", "abc"),  # UTF8String
        ("CN=#0c04c3bc6869", "\u00fchi"),  # UTF8String, non-ASCII, lower-case hex
        ("CN=#1303414243", "ABC"),  # PrintableString
        ("CN=#1602612E", "a."),  # IA5String
        ("CN=#1E0400410042", "AB"),  # BMPString
        ("CN=#1E024F20", "传"),  # BMPString, CJK
        ("CN=#0C8103616263", "abc"),  # long-form length
        ("CN=#0C03616263 ,O=x", "abc"),  # spaces before the separator
    ],
)
def test_hash_hex_ber_values_are_decoded(text: str, expected: str) -> None:
    assert rdns(parse_distinguished_name(text))[-1] == [("2.5.4.3", expected)]


@pytest.mark.parametrize("keyword", ["CN", "cn", "Cn", "cN"])
def test_keywords_are_case_insensitive(keyword: str) -> None:
    assert rdns(parse_distinguished_name(f"{keyword}=dev-1")) == [[("2.5.4.3", "dev-1")]]


@pytest.mark.parametrize(
    ("keyword", "oid"),
    [
        ("SERIALNUMBER", NameOID.SERIAL_NUMBER),
        ("serialNumber", NameOID.SERIAL_NUMBER),
        ("SN", NameOID.SURNAME),  # SN is the surname, never the serial number
        ("O", NameOID.ORGANIZATION_NAME),
        ("OU", NameOID.ORGANIZATIONAL_UNIT_NAME),
        ("L", NameOID.LOCALITY_NAME),
        ("ST", NameOID.STATE_OR_PROVINCE_NAME),
        ("S", NameOID.STATE_OR_PROVINCE_NAME),  # .NET prints the state as S=
        ("STREET", NameOID.STREET_ADDRESS),
        ("DC", NameOID.DOMAIN_COMPONENT),
        ("UID", NameOID.USER_ID),
        ("E", NameOID.EMAIL_ADDRESS),
        ("EMAIL", NameOID.EMAIL_ADDRESS),
        ("emailAddress", NameOID.EMAIL_ADDRESS),
        ("T", NameOID.TITLE),
        ("G", NameOID.GIVEN_NAME),
        ("GN", NameOID.GIVEN_NAME),
        ("givenName", NameOID.GIVEN_NAME),
        ("dnQualifier", NameOID.DN_QUALIFIER),
        ("postalCode", NameOID.POSTAL_CODE),
    ],
)
def test_keyword_maps_to_its_attribute_type(keyword: str, oid: x509.ObjectIdentifier) -> None:
    assert rdns(parse_distinguished_name(f"{keyword}=Value-1")) == [
        [(oid.dotted_string, "Value-1")]
    ]


def test_country_takes_a_two_letter_code() -> None:
    assert rdns(parse_distinguished_name("C=DE")) == [[("2.5.4.6", "DE")]]


def test_blank_text_is_the_empty_name() -> None:
    assert parse_distinguished_name("") == x509.Name([])
    assert parse_distinguished_name("   ") == x509.Name([])


# --- .NET / DPS leniencies -----------------------------------------------------------------


def test_spaces_after_commas_and_around_equals_are_ignored() -> None:
    name = parse_distinguished_name("CN = dev-1 ,  O =  Contoso,OU=  Line-A")

    assert rdns(name) == [
        [("2.5.4.11", "Line-A")],
        [("2.5.4.10", "Contoso")],
        [("2.5.4.3", "dev-1")],
    ]


def test_semicolons_separate_rdns_like_commas() -> None:
    assert parse_distinguished_name("CN=dev-1; O=Contoso;C=US") == parse_distinguished_name(
        "CN=dev-1,O=Contoso,C=US"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('O="Contoso, Ltd"', "Contoso, Ltd"),
        ('O="a+b;c=d<e>#f"', "a+b;c=d<e>#f"),
        ('O="Say ""Hi"""', 'Say "Hi"'),
        ('O=""""', '"'),
        ('O="esc \\"aped\\""', 'esc "aped"'),
        ('O="  padded  "', "  padded  "),
        ('O="Gr\\C3\\BC\\C3\\9Fe"', "Grüße"),
    ],
)
def test_double_quoted_values_keep_specials_literally(text: str, expected: str) -> None:
    assert single_value(text) == expected


def test_dotnet_style_subject_with_quoted_organization() -> None:
    name = parse_distinguished_name('CN=dev-1, SERIALNUMBER=SN-1, O="Contoso, Ltd", C=US')

    assert rdns(name) == [
        [("2.5.4.6", "US")],
        [("2.5.4.10", "Contoso, Ltd")],
        [("2.5.4.5", "SN-1")],
        [("2.5.4.3", "dev-1")],
    ]


def test_quoted_value_inside_a_multi_valued_rdn_and_spaces_after_the_quote() -> None:
    name = parse_distinguished_name('CN="a,b"+O=c  ,  OU="x"  ')

    assert rdns(name) == [[("2.5.4.11", "x")], [("2.5.4.10", "c"), ("2.5.4.3", "a,b")]]


def test_lenient_input_prints_back_as_strict_rfc4514_in_the_same_order() -> None:
    text = 'CN=dev-1; SERIALNUMBER = SN-1, O="Contoso, Ltd"'

    assert (
        parse_distinguished_name(text).rfc4514_string(SERIALNUMBER_OVERRIDE)
        == "CN=dev-1,SERIALNUMBER=SN-1,O=Contoso\\, Ltd"
    )


# --- errors --------------------------------------------------------------------------------


def test_distinguished_name_error_is_a_value_error() -> None:
    assert issubclass(DistinguishedNameError, ValueError)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("CN", "expected '=' after the attribute type (at character 3)"),
        ("CN=dev-1,O", "expected '=' after the attribute type (at character 11)"),
        ("CN=dev-1, 2.5.4.3 ", "expected '=' after the attribute type (at character 19)"),
        ("CN=dev-1,Contoso", "unknown attribute type 'Contoso'"),
        ("=dev-1", "missing attribute type (at character 1)"),
        (",CN=dev-1", "missing attribute type (at character 1)"),
        ("CN=dev-1,", "missing attribute type (at character 10)"),
        ("CN=dev-1,,O=x", "missing attribute type (at character 10)"),
        ("Foo=bar", "unknown attribute type 'Foo'"),
        ("CN=dev-1,Foo=bar", "unknown attribute type 'Foo' (at character 13)"),
        ("1.2.x=a", "bad object identifier '1.2.x'"),
        ("CN=\\zz", "invalid escape '\\z'"),
        ("CN=\\4", "invalid escape '\\4'"),
        ("CN=dev\\", "dangling '\\' at the end"),
        ('O="Contoso', "unterminated quoted value"),
        ('O="Contoso, Ltd', "unterminated quoted value"),
        ('O="Contoso" Ltd', "unexpected text after a quoted value"),
        ('O="Contoso"Ltd,CN=x', "unexpected text after a quoted value"),
        ('CN=say "hi"', "unescaped '\"' inside a value"),
        ("CN=\\C3\\28", "escaped bytes are not valid UTF-8"),
        ("CN=\\FF", "escaped bytes are not valid UTF-8"),
        ("CN=\\C3", "escaped bytes are not valid UTF-8"),
        ("CN=#", "'#' must be followed by hex-encoded BER"),
        ("CN=#ZZ", "'#' must be followed by hex-encoded BER"),
        ("CN=#0C0", "'#' must be followed by hex-encoded BER"),
        ("CN=#0C0361626 3", "'#' must be followed by hex-encoded BER"),
        ("CN=#0C03616263x", "'#' must be followed by hex-encoded BER"),
        ("CN=#0C", "'#' value is not a DER string type we read"),
        ("CN=#040161", "'#' value is not a DER string type we read"),
        ("CN=#30030C0161", "'#' value is not a DER string type we read"),
        ("CN=#0C0461", "'#' value length does not match its content"),
        ("CN=#0C01616263", "'#' value length does not match its content"),
        ("CN=#0C80", "'#' value has a bad DER length"),
        ("CN=#0C840000000161", "'#' value has a bad DER length"),
        ("CN=#1E0141", "'#' value does not decode"),
        ("CN=#0C01FF", "'#' value does not decode"),
        ("CN=#1E02D800", "'#' value does not decode"),
        ("C=USA", "2.5.4.6: Attribute's length must be >= 2 and <= 2, but it was 3"),
        ("C=U", "2.5.4.6: Attribute's length must be >= 2 and <= 2, but it was 1"),
        ("CN=", "2.5.4.3: Attribute's length must be >= 1 and <= 64, but it was 0"),
        ("CN=" + "x" * 65, "2.5.4.3: Attribute's length must be >= 1 and <= 64, but it was 65"),
        ("CN=a+CN=a", "duplicate attributes are not allowed"),
    ],
)
def test_malformed_text_is_refused_with_a_message_naming_the_problem(
    text: str, message: str
) -> None:
    with pytest.raises(DistinguishedNameError) as caught:
        parse_distinguished_name(text)

    assert message in str(caught.value)


def test_text_longer_than_the_limit_is_refused_before_parsing() -> None:
    text = "CN=" + "a" * (MAX_DN_LENGTH - 2)
    assert len(text) == MAX_DN_LENGTH + 1

    with pytest.raises(DistinguishedNameError, match="longer than 4096 characters"):
        parse_distinguished_name(text)


def test_text_of_exactly_the_limit_is_parsed() -> None:
    prefix = "1.3.6.1.4.1.99999.1="
    text = prefix + "v" * (MAX_DN_LENGTH - len(prefix))
    assert len(text) == MAX_DN_LENGTH

    assert rdns(parse_distinguished_name(text)) == [
        [("1.3.6.1.4.1.99999.1", "v" * (MAX_DN_LENGTH - len(prefix)))]
    ]


@pytest.mark.parametrize(
    "text",
    [
        "3.5=x",  # the first arc must be 0, 1 or 2
        "1.40=x",  # under arcs 0 and 1 the second arc must be below 40
        "0.99=x",
        "\u0663.\u0665=x",  # ARABIC-INDIC digits pass str.isdigit()
        "\u00b2.5=x",  # SUPERSCRIPT TWO passes str.isdigit()
    ],
)
def test_invalid_object_identifier_is_a_distinguished_name_error(text: str) -> None:
    with pytest.raises(DistinguishedNameError, match="object identifier"):
        parse_distinguished_name(text)


@pytest.mark.parametrize("text", ["OID.=a", "oid. =a", "CN=dev-1,OID.=x"])
def test_oid_prefix_without_a_number_is_a_distinguished_name_error(text: str) -> None:
    with pytest.raises(DistinguishedNameError, match=r"attribute type|object identifier"):
        parse_distinguished_name(text)


@pytest.mark.parametrize("text", ["CN=dev-\ud800", 'O="Contoso \udfff"', "OU=\ud83d"])
def test_lone_surrogate_in_the_text_is_a_distinguished_name_error(text: str) -> None:
    with pytest.raises(DistinguishedNameError):
        parse_distinguished_name(text)


# --- properties ----------------------------------------------------------------------------

_VALUE_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00"),  # no surrogates
    min_size=1,
    max_size=16,  # <= 64 UTF-8 bytes, the CN upper bound cryptography enforces
)
_ATTRIBUTE_TYPES = st.sampled_from(
    [
        NameOID.COMMON_NAME,
        NameOID.ORGANIZATION_NAME,
        NameOID.ORGANIZATIONAL_UNIT_NAME,
        NameOID.SERIAL_NUMBER,
        NameOID.LOCALITY_NAME,
    ]
)
_RDNS = st.lists(
    st.tuples(_ATTRIBUTE_TYPES, _VALUE_TEXT),
    min_size=1,
    max_size=3,
    unique=True,  # an RDN cannot hold the same attribute twice
).map(lambda pairs: x509.RelativeDistinguishedName([x509.NameAttribute(o, v) for o, v in pairs]))
_NAMES = st.lists(_RDNS, min_size=1, max_size=5).map(x509.Name)


@settings(max_examples=300)
@given(_NAMES)
@example(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, " ")]))
@example(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ' #"+,;<>\\=\t ')]))
@example(
    x509.Name(
        [
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "dev-1"),
                    x509.NameAttribute(NameOID.SERIAL_NUMBER, "SN 1 "),
                ]
            )
        ]
    )
)
def test_rfc4514_string_of_any_name_parses_back_to_the_same_name(name: x509.Name) -> None:
    text = name.rfc4514_string(SERIALNUMBER_OVERRIDE)

    assert rdns(parse_distinguished_name(text)) == rdns(name)


_DN_ALPHABET = st.sampled_from([*'CNOUSERIALNMB=,;+\\"# .0123456789abcdefABCDEF\t\né'])


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=60), st.text(alphabet=_DN_ALPHABET, max_size=60)))
@example("3.5=x")
@example("OID.=x")
@example("CN=#0C8400000001")
@example('O=""""""')
def test_any_text_parses_or_raises_distinguished_name_error_only(text: str) -> None:
    try:
        result = parse_distinguished_name(text)
    except DistinguishedNameError:
        return
    assert isinstance(result, x509.Name)
