"""Values spliced into IoT Hub queries as literals, so data can never change a query's shape.

IoT Hub's query language allows the escapes \\' \\" \\\\ and \\uXXXX in string literals; a
value quoted here is one string literal whatever it contains (a device id, a forged tag).
"""

from __future__ import annotations


def string_literal(value: str) -> str:
    """`value` as a single-quoted IoT Hub query string literal."""
    return "'" + "".join(_escaped(char) for char in value) + "'"


def _escaped(char: str) -> str:
    if char in ("\\", "'", '"'):
        return "\\" + char
    if not char.isprintable() and ord(char) <= 0xFFFF:
        return f"\\u{ord(char):04x}"
    return char
