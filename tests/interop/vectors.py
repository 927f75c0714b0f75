"""Writes a JWE made by jwcrypto for hookline's test key, to stdout.

hookline's unit tests decrypt it (src/crypto/testdata/jwcrypto-vector.json),
which proves the other direction of interoperability: what a standard JOSE
library produces, hookline opens. Regenerate with:

    python vectors.py ../../src/crypto/testdata/rsa2048-spki.pem \
        > ../../src/crypto/testdata/jwcrypto-vector.json
"""

import json
import pathlib
import sys

from jwcrypto import jwe, jwk

PLAINTEXT = {
    "id": "evt_jwcrypto",
    "type": "order.created",
    "timestamp": "2026-11-28T10:00:00Z",
    "tenant": "acme",
    "data": {"made_by": "jwcrypto"},
}


def main() -> None:
    key = jwk.JWK.from_pem(pathlib.Path(sys.argv[1]).read_bytes())
    protected = {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": key.thumbprint()}
    token = jwe.JWE(
        json.dumps(PLAINTEXT).encode(), protected=json.dumps(protected)
    )
    token.add_recipient(key)
    vector = {
        "library": "jwcrypto",
        "kid": key.thumbprint(),
        "jwe": json.loads(token.serialize(compact=False)),
        "plaintext": PLAINTEXT,
    }
    print(json.dumps(vector, indent=2))


if __name__ == "__main__":
    main()
