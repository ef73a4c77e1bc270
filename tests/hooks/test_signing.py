"""Standard Webhooks signing (gateway.hooks.signing), checked against the scheme's published
example and an HMAC computed here, independently."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from gateway.hooks import signing

# The example of the Standard Webhooks reference libraries (standard-webhooks, webhook tests).
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = b'{"test": 2432232314}'
EXPECTED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_signature_of_the_published_example() -> None:
    assert signing.signature(SECRET, MSG_ID, TIMESTAMP, BODY) == EXPECTED


def test_the_signature_is_hmac_sha256_of_id_timestamp_body_with_the_decoded_secret() -> None:
    key = bytes(range(32))
    secret = "whsec_" + base64.b64encode(key).decode()
    body = '{"id":"0001716400000000-000003","data":{"ü":1}}'.encode()
    mac = hmac.new(key, b"0001716400000000-000003.1716400000." + body, hashlib.sha256).digest()
    assert signing.signature(secret, "0001716400000000-000003", 1716400000, body) == \
        "v1," + base64.b64encode(mac).decode()


def test_headers_carry_id_timestamp_signature_and_content_type() -> None:
    assert signing.headers(SECRET, MSG_ID, TIMESTAMP, BODY) == {
        "content-type": "application/json", "webhook-id": MSG_ID,
        "webhook-timestamp": str(TIMESTAMP), "webhook-signature": EXPECTED}


def test_verify_accepts_any_of_several_signatures_and_refuses_changes() -> None:
    assert signing.verify(SECRET, MSG_ID, TIMESTAMP, BODY, EXPECTED)
    assert signing.verify(SECRET, MSG_ID, TIMESTAMP, BODY, "v1,b3RoZXI= " + EXPECTED)
    assert not signing.verify(SECRET, MSG_ID, TIMESTAMP, BODY + b" ", EXPECTED)
    assert not signing.verify(SECRET, MSG_ID, TIMESTAMP + 1, BODY, EXPECTED)
    assert not signing.verify(SECRET, "msg_other", TIMESTAMP, BODY, EXPECTED)
    assert not signing.verify(SECRET, MSG_ID, TIMESTAMP, BODY, EXPECTED.replace("v1,", "v2,"))


def test_generated_secrets_are_whsec_and_32_random_bytes() -> None:
    first, second = signing.generate_secret(), signing.generate_secret()
    assert first.startswith("whsec_") and first != second
    assert len(signing.secret_key(first)) == 32


@pytest.mark.parametrize("secret", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!"])
def test_malformed_secrets_are_refused(secret: str) -> None:
    with pytest.raises(ValueError):
        signing.secret_key(secret)
