"""The signature receivers check: HMAC-SHA256 over "<timestamp>.<body>"."""

import hashlib
import hmac
import time

from app.webhooks.signing import sign, verify_signature

SECRET = "whsec_unit-test-secret"
BODY = b'{"id":"e1","type":"price.changed","data":{"old":"10.00","new":"12.00"}}'


def test_signature_is_hmac_sha256_of_timestamp_dot_body():
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, 1700000000, BODY) == f"sha256={expected}"


def test_good_signature_verifies():
    ts = str(int(time.time()))
    assert verify_signature(SECRET, ts, BODY, sign(SECRET, ts, BODY))
    assert verify_signature(SECRET, ts, BODY.decode(), sign(SECRET, ts, BODY))


def test_tampered_body_fails():
    ts = str(int(time.time()))
    signature = sign(SECRET, ts, BODY)
    assert not verify_signature(SECRET, ts, BODY.replace(b"12.00", b"1.00"), signature)


def test_wrong_secret_fails():
    ts = str(int(time.time()))
    assert not verify_signature("another-secret", ts, BODY, sign(SECRET, ts, BODY))


def test_timestamp_is_signed_so_it_cannot_be_swapped():
    ts = int(time.time())
    signature = sign(SECRET, ts - 10, BODY)
    assert not verify_signature(SECRET, str(ts), BODY, signature)


def test_stale_or_future_timestamp_fails_even_with_a_valid_signature():
    now = 1_800_000_000
    old, future = now - 301, now + 301
    assert not verify_signature(SECRET, old, BODY, sign(SECRET, old, BODY), now=now)
    assert not verify_signature(SECRET, future, BODY, sign(SECRET, future, BODY), now=now)
    assert verify_signature(SECRET, now - 299, BODY, sign(SECRET, now - 299, BODY), now=now)
    assert verify_signature(SECRET, old, BODY, sign(SECRET, old, BODY), tolerance=600, now=now)


def test_missing_or_malformed_headers_fail():
    ts = str(int(time.time()))
    good = sign(SECRET, ts, BODY)
    assert not verify_signature(SECRET, None, BODY, good)
    assert not verify_signature(SECRET, ts, BODY, None)
    assert not verify_signature(SECRET, "not-a-number", BODY, good)
    assert not verify_signature(SECRET, ts, BODY, good.removeprefix("sha256="))
    assert not verify_signature(SECRET, ts, BODY, "sha256=" + "0" * 64)
