"""Checks hookline's output with third-party Python libraries.

Given a directory written by the `emits_interop_fixtures` or
`emits_rotation_interop_fixtures` unit test or by the
`a_real_delivery_is_captured_for_the_interop_checks` integration test (a
request that a replica really delivered), it checks that:
- `cryptography` loads the key pair written by `hookline keygen`;
- `standardwebhooks` verifies the request's signature, with each secret
  alone when the fixture lists several (a signing-secret rotation), and
  refuses it once the body is altered;
- `jwcrypto` decrypts the JWE body with the private key, sees the contract's
  protected header, and computes the same RFC 7638 thumbprint as the `kid`.

Usage: python check.py FIXTURE_DIR
"""

import json
import pathlib
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwcrypto import jwe, jwk
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def check_keygen_pems(private_pem: bytes, public_pem: bytes) -> None:
    private = serialization.load_pem_private_key(private_pem, password=None)
    assert isinstance(private, rsa.RSAPrivateKey), type(private)
    assert private.key_size == 2048, private.key_size
    assert private_pem.startswith(b"-----BEGIN PRIVATE KEY-----\n"), "not PKCS#8"
    public = serialization.load_pem_public_key(public_pem)
    assert public.public_numbers() == private.public_key().public_numbers()
    # The public file is exactly the SPKI PEM that cryptography writes.
    spki = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert spki == public_pem, "public.pem differs from cryptography's SPKI PEM"
    print("cryptography: keygen's PKCS#8 and SPKI PEMs load and match")


def check_signature(request: dict, body: bytes) -> None:
    headers = {
        name: request[name]
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
    }
    # A fixture made during a signing-secret rotation lists every secret the
    # request is signed with (new first); each must verify it on its own.
    secrets = request.get("secrets", [request["secret"]])
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == len(secrets), (signatures, len(secrets))
    altered = body.replace(b'"tag":"', b'"tag":"A', 1)
    for secret in secrets:
        webhook = Webhook(secret)
        parsed = webhook.verify(body, headers)
        assert set(parsed) == {"protected", "encrypted_key", "iv", "ciphertext", "tag"}
        try:
            webhook.verify(altered, headers)
        except WebhookVerificationError:
            pass
        else:
            raise AssertionError("standardwebhooks accepted an altered body")
    print(
        f"standardwebhooks: {len(signatures)} signature(s), verified with each of "
        f"{len(secrets)} secret(s) alone, altered body refused"
    )


def check_jwe(request: dict, body: bytes, private_pem: bytes) -> None:
    key = jwk.JWK.from_pem(private_pem)
    assert key.thumbprint() == request["kid"], (key.thumbprint(), request["kid"])
    token = jwe.JWE()
    token.deserialize(body.decode("ascii"), key=key)
    expected_header = {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": request["kid"]}
    assert token.jose_header == expected_header, token.jose_header
    assert json.loads(token.payload) == request["plaintext"]
    print("jwcrypto: JWE decrypted, header and thumbprint match")


def main() -> None:
    directory = pathlib.Path(sys.argv[1])
    request = json.loads((directory / "request.json").read_text())
    body = (directory / "body.json").read_bytes()
    private_pem = (directory / "keys" / "private.pem").read_bytes()
    public_pem = (directory / "keys" / "public.pem").read_bytes()
    check_keygen_pems(private_pem, public_pem)
    check_signature(request, body)
    check_jwe(request, body, private_pem)


if __name__ == "__main__":
    main()
