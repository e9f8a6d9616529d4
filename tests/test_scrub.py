"""Secrets and URL queries are scrubbed from every message, in every encoding a server may echo."""

from __future__ import annotations

import json
import logging
import sys
import urllib.parse

from hypothesis import given
from hypothesis import strategies as st

from exporter.logs import ScrubFilter, register_secret, scrub


def test_urls_lose_user_information_query_and_fragment():
    text = "GET https://user:pw@host.example:8443/p/c.yml?sig=abc&se=1#frag failed; see http://x/y?z=1"
    assert scrub(text) == "GET https://host.example:8443/p/c.yml?*** failed; see http://x/y?***"


@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=8, max_size=40))
def test_a_registered_secret_is_gone_in_every_encoding(secret):
    register_secret(secret)
    for form in (
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
        json.dumps(secret)[1:-1],
    ):
        assert form not in scrub(f"client_id=x&client_secret={form}&scope=y")


def test_a_library_record_with_a_traceback_is_scrubbed_into_one_field():
    register_secret("Tr0ub4dor&3-secret")
    try:
        raise ValueError("echo: client_secret=Tr0ub4dor%263-secret")
    except ValueError:
        record = logging.LogRecord("msal", logging.ERROR, "f", 1, "answer %s", ("Tr0ub4dor&3-secret",), None)
        record.exc_info = sys.exc_info()
    assert ScrubFilter().filter(record)
    assert record.getMessage() == "answer ***" and record.exc_info is None
    assert "Tr0ub4dor" not in record.__dict__["err"] and "ValueError" in record.__dict__["err"]


def test_structured_fields_are_scrubbed_too():
    """A secret or a URL query in an ``extra`` field (err, origin) is scrubbed like the message."""
    register_secret("Field-Secret-7e1b")
    record = logging.LogRecord("exporter", logging.WARNING, "f", 1, "Collection failed", (), None)
    record.__dict__.update(err="token endpoint said Field-Secret-7e1b", origin="https://h.example/c.yml?sig=x", n=3)
    assert ScrubFilter().filter(record)
    assert (record.__dict__["err"], record.__dict__["origin"], record.__dict__["n"]) == (
        "token endpoint said ***",
        "https://h.example/c.yml?***",
        3,
    )
