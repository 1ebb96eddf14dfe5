"""Masking secrets in text operators read (tool errors, tracebacks, log lines): ``runs.redact``.

What looks like a credential becomes ``[redacted]``; what says *where* it was (the scheme and host
of a URL, the name of a parameter) stays, so the text still explains the failure.
"""

from __future__ import annotations

import time

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
        # spaces around "=", header-style "name: value", numbers, quoted values with spaces
        ("api_key = sekret123 (rejected)", f"api_key = {MASK} (rejected)"),
        ("password: hunter2xyz", f"password: {MASK}"),
        ("X-Api-Key: abcdef123456\r\nAccept: */*", f"X-Api-Key: {MASK}\r\nAccept: */*"),
        ("apiKey: abc123", f"apiKey: {MASK}"),
        ('{"api_key": 123456789, "page": 2}', f'{{"api_key": {MASK}, "page": 2}}'),
        ('passwd="a b c" user=bob', f'passwd="{MASK}" user=bob'),
        ("{'token': 'x, y and z'}", f"{{'token': '{MASK}'}}"),
        ("headers: {'X-Api-Key': 'abc def'}", f"headers: {{'X-Api-Key': '{MASK}'}}"),
        ("'password=hunter2'", f"'password={MASK}'"),
        # an unclosed quote: masked to the end of the line, not just its first word
        ('password="correct horse\nnext line', f'password="{MASK}\nnext line'),
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


def test_the_app_and_django_secrets_are_masked_too(settings):
    """API tokens in each of their forms (of ``client:scope:token``, the token: the client's
    name is no secret), the metrics token and Django's signing keys."""
    settings.RUNS_API_TOKENS = [
        "plain-token-0001",
        "acme:operate:acme-token:with-colons",
        {"client": "audit", "scope": "read", "token": "audit-token-0003"},
    ]
    settings.RUNS_METRICS_TOKEN = "metrics-token-0004"
    settings.SECRET_KEY = "django-insecure-signing-key-0005"
    settings.SECRET_KEY_FALLBACKS = ["old-signing-key-0006"]
    text = (
        "plain-token-0001 acme:operate:acme-token:with-colons audit-token-0003"
        " metrics-token-0004 django-insecure-signing-key-0005 old-signing-key-0006"
    )
    assert redact(text) == f"{MASK} acme:operate:{MASK} {MASK} {MASK} {MASK} {MASK}"


def test_api_tokens_from_the_environment_form_are_masked(settings):
    settings.RUNS_API_TOKENS = "acme:operate:tok-acme-1,audit:read:tok-audit-2"
    assert redact("sent tok-acme-1 and tok-audit-2") == f"sent {MASK} and {MASK}"


def test_a_malformed_token_setting_does_not_break_redaction(settings):
    """Redaction runs on error paths: a bad entry is the system check's to report, not a crash."""
    settings.RUNS_API_TOKENS = [None, 42, {"client": "x"}, "ok-token-0007"]
    assert redact("ok-token-0007") == MASK


@pytest.mark.parametrize(
    "unit", ['password="', "'pwd'='", 'x: "token": ', "token ", "keykeykey ", "a=b&sig="]
)
def test_time_is_linear_in_the_text_even_for_adversarial_input(unit):
    """A message may be megabytes; a pattern that backtracks would stall the worker."""
    text = unit * (2_000_000 // len(unit))
    started = time.monotonic()
    redact(text)
    assert time.monotonic() - started < 3


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
