"""Masking secrets in text operators read (tool errors, tracebacks, log lines): ``runs.redact``.

What looks like a credential becomes ``[redacted]``; what says *where* it was (the scheme and host
of a URL, the name of a parameter) stays, so the text still explains the failure.
"""

from __future__ import annotations

import pytest

from runs.redact import MASK, configured_secrets, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # API keys and webhook secrets by their shape
        ("key sk-proj-Ab12Cd34Ef56Gh78 refused", f"key {MASK} refused"),
        ("secret whsec_c2VjcmV0LXNpZ25pbmcta2V5 is bad", f"secret {MASK} is bad"),
        ("token ghp_0123456789abcdefghijABCDEFGHIJ", f"token {MASK}"),
        # bearer tokens and Authorization headers
        ("Authorization: Bearer eyJhbGciOi.JIUzI1NiJ9.abc", f"Authorization: {MASK}"),
        ("sent bearer abcdefgh123456 twice", f"sent bearer {MASK} twice"),
        ("{'authorization': 'Basic dXNlcjpwYXNz'}", f"{{'authorization': '{MASK}'}}"),
        # passwords and keys in URLs: the user-info, and secret-named query parameters
        (
            "GET https://bob:hunter22@db.example.com:5432/app failed",
            f"GET https://{MASK}@db.example.com:5432/app failed",
        ),
        ("redis://:s3cret-pw@cache:6379/0", f"redis://{MASK}@cache:6379/0"),
        (
            "https://api.example.com/v1/x?api_key=abc123&page=2&access_token=zzz#sig=q",
            f"https://api.example.com/v1/x?api_key={MASK}&page=2&access_token={MASK}#sig={MASK}",
        ),
        # name=value and JSON pairs whose name says secret
        ("login failed: password=hunter2 user=bob", f"login failed: password={MASK} user=bob"),
        ('{"client_secret": "abc", "id": 7}', f'{{"client_secret": "{MASK}", "id": 7}}'),
        ("{'password': 'hunter2'}", f"{{'password': '{MASK}'}}"),
    ],
)
def test_credentials_are_masked_and_the_context_kept(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "ZeroDivisionError: division by zero",
        "GET https://api.example.com/v1/responses?page=2&limit=20 returned 503",
        "max_tokens=5 temperature=0.2",
        "write to bob@example.com failed",
        "the key was missing from the mapping",
        # a field named in an error message is not a secret's value
        "invalid arguments for store: key: Input should be a valid string",
    ],
)
def test_text_without_secrets_is_left_alone(text):
    assert redact(text) == text


def test_the_configured_secrets_are_masked_whatever_their_shape(settings):
    settings.OPENAI_API_KEY = "proxy-key-7f3a9c"  # a gateway key: no sk- prefix to recognise
    settings.OPENAI_WEBHOOK_SECRET = "whsec_AAAABBBBCCCC"
    text = "proxy refused proxy-key-7f3a9c; webhook secret whsec_AAAABBBBCCCC"
    assert redact(text) == f"proxy refused {MASK}; webhook secret {MASK}"
    assert set(configured_secrets()) >= {"proxy-key-7f3a9c", "whsec_AAAABBBBCCCC"}


def test_a_short_configured_value_is_not_searched_for(settings):
    """A one-letter "key" in a test settings file must not mask every 'x' in a message."""
    settings.OPENAI_API_KEY = "x"
    assert redact("x marks the spot") == "x marks the spot"
    assert "x" not in configured_secrets()


def test_explicit_secrets_replace_the_configured_ones():
    assert redact("pin 4711-0815 and pin 1234", secrets=["4711-0815"]) == f"pin {MASK} and pin 1234"


def test_redacting_twice_changes_nothing():
    once = redact("https://u:p@h/x?token=t Authorization: Bearer abcdefgh sk-abcdefgh12345")
    assert redact(once) == once
    assert "abcdefgh" not in once and "u:p@" not in once
