"""A local AWS KMS for gitgate's tests: moto's server on an ephemeral port, with one
RSA_2048 SIGN_VERIFY key.

Prints one JSON line once it serves: {"endpoint", "keyId", "publicKeyPkcs1Der" (base64)},
then serves until killed.

moto 5.2 signs every message as MessageType=RAW (it hashes it again). Real KMS signs a
DIGEST message as the hash itself, and gitgate sends DIGEST, so this launcher makes
moto's Sign honour MessageType=DIGEST the way KMS does.
"""

import base64
import contextvars
import json
import sys
import threading

import boto3
from cryptography.hazmat.primitives.asymmetric import utils as asymmetric
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
)
from moto.kms import responses as kms_responses
from moto.kms import utils as kms_utils
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

REGION = "us-east-1"
_digest = contextvars.ContextVar("digest", default=False)

_response_sign = kms_responses.KmsResponse.sign


def _sign_response(self):
    token = _digest.set(self._get_param("MessageType") == "DIGEST")
    try:
        return _response_sign(self)
    finally:
        _digest.reset(token)


def _rsa_sign(self, message, signing_algorithm):
    kms_utils.validate_signing_algorithm(
        signing_algorithm, kms_utils.SigningAlgorithm.rsa_signing_algorithms()
    )
    pad, hash_algorithm = self._RSAPrivateKey__padding_and_hash_algorithm(signing_algorithm)
    if _digest.get():
        if len(message) != hash_algorithm.digest_size:
            raise kms_utils.ValidationException("Digest is invalid length for algorithm")
        hash_algorithm = asymmetric.Prehashed(hash_algorithm)
    return self.private_key.sign(message, pad, hash_algorithm)


kms_responses.KmsResponse.sign = _sign_response
kms_utils.RSAPrivateKey.sign = _rsa_sign


def main():
    server = make_server(
        "127.0.0.1", 0, DomainDispatcherApplication(create_backend_app), threaded=True
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.port}"
    kms = boto3.client(
        "kms",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    key_id = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    spki = kms.get_public_key(KeyId=key_id)["PublicKey"]
    pkcs1 = load_der_public_key(spki).public_bytes(Encoding.DER, PublicFormat.PKCS1)
    print(
        json.dumps(
            {
                "endpoint": endpoint,
                "keyId": key_id,
                "publicKeyPkcs1Der": base64.b64encode(pkcs1).decode(),
            }
        ),
        flush=True,
    )
    # Serve until the test kills us or closes our stdin.
    sys.stdin.read()


if __name__ == "__main__":
    main()
