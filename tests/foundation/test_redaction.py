"""Secrets are kept out of every message and log line: URLs, headers and registered values."""

from __future__ import annotations


def test_redaction_covers_urls_headers_and_registered_values():
    from kappamask_core.foundation.redaction import add_secret, forget_secrets, redact

    add_secret("s3cr3t-value")
    try:
        text = redact("GET http://u:pw123@h/x Headers: {'Authorization': 'Bearer abc.def', 'X-API-Key': 'k1234'} "
                      "?sig=abcd&token=zzz echo s3cr3t-value")
    finally:
        forget_secrets()
    for secret in ("pw123", "abc.def", "k1234", "abcd", "zzz", "s3cr3t-value"):
        assert secret not in text, text
    assert "the token count is fine" == redact("the token count is fine")
