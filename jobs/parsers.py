"""JSON read from a request (a body, a form field) with every malformed text refused as malformed.

Python's decoder raises `RecursionError`, not `ValueError`, on text nested deeper than its stack (`[` x 50,000, a
few hundred kilobytes): DRF's parser and a form's `json.loads` catch only the latter, so such a body was a 500.
"""
from __future__ import annotations

import json
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError


def loads(text: str | bytes) -> Any:
    """`json.loads`, whose every failure is a `ValueError` (`json.JSONDecodeError` or nesting too deep)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def problem(error: ValueError) -> str:
    """What a user is told of text `loads` refused: where, for a syntax error."""
    if isinstance(error, json.JSONDecodeError) and error.pos >= len(error.doc.rstrip()):
        return "the text ends before the JSON does (a closing ] or } missing?)"
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at character {error.pos}"
    return str(error)


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, a body nested too deeply refused as any malformed JSON is (400, "JSON parse error")."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict[str, Any] | None = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None
