"""
moto's server with Ed25519 KMS keys: THE TESTS' OWN EXTENSION OF MOTO, because moto 5.2.5 (the newest on PyPI)
has no ECC_NIST_EDWARDS25519 key spec (its KeySpec enum, moto/kms/utils.py, stops at the NIST and secp256k1
curves, and CreateKey refuses anything else) and no Ed25519 signer. AWS KMS itself offers the key spec; this file
adds what the KMS API reference (CreateKey, GetPublicKey, Sign, Verify) says about it and leaves every other part
of moto unchanged:

  - CreateKey accepts KeySpec ECC_NIST_EDWARDS25519 (KeyUsage SIGN_VERIFY) and makes an Ed25519 private key with
    `cryptography`;
  - DescribeKey and GetPublicKey list its signing algorithms ED25519_SHA_512 and ED25519_PH_SHA_512, and
    GetPublicKey returns the DER SubjectPublicKeyInfo (RFC 8410) and, as KMS does, `KeySpec` (moto itself
    answers only the deprecated `CustomerMasterKeySpec`; the extension adds `KeySpec` for its own keys only);
  - Sign and Verify with ED25519_SHA_512 require MessageType RAW (pure Ed25519, RFC 8032 §5.1.6; the signature is
    the raw 64 bytes). ED25519_PH_SHA_512 (which requires MessageType DIGEST) is answered with
    UnsupportedOperationException: `cryptography` has no Ed25519ph, so the extension does not pretend to sign it.
    Any other signing algorithm gets KMS's ValidationException naming the key's algorithms, as for other keys.

It also makes one S3 behaviour what S3 documents: a conditional create (PutObject with `If-None-Match: *`) is
atomic — of concurrent creates of one key exactly one succeeds and the others get 412 Precondition Failed (or 409),
as the S3 user guide's section on conditional writes says. moto's `S3Response.put_object` checks that the key is
absent and then writes, in two steps, on a threaded server, so two concurrent creates could both succeed (docs/AWS.md,
emulator table: measured there, and seen in a CI run of the port contracts). The extension holds one lock across
the check and the write of every conditional create; every other request runs as moto runs it.

Run exactly like moto_server: `python moto_server_ed25519.py -H 127.0.0.1 -p 0` (test/emulators/harness.ts).
"""

import json
import sys
import threading

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from moto.core.exceptions import JsonRESTError
from moto.kms import models, responses, utils
from moto.kms.exceptions import ValidationException
from moto.s3 import responses as s3_responses

KEY_SPEC = "ECC_NIST_EDWARDS25519"
PURE = "ED25519_SHA_512"
PREHASHED = "ED25519_PH_SHA_512"


class UnsupportedOperationException(JsonRESTError):
    code = 400

    def __init__(self, message: str):
        super().__init__("UnsupportedOperationException", message)


class Ed25519PrivateKey(utils.AbstractPrivateKey):
    def __init__(self) -> None:
        self.private_key = ed25519.Ed25519PrivateKey.generate()

    @staticmethod
    def _check(signing_algorithm: str) -> None:
        if signing_algorithm == PREHASHED:
            raise UnsupportedOperationException(
                f"{PREHASHED} is not emulated (test/emulators/moto_server_ed25519.py); use {PURE} with MessageType RAW"
            )
        if signing_algorithm != PURE:
            raise ValidationException(
                f"1 validation error detected: Value '{signing_algorithm}' at 'SigningAlgorithm' failed "
                f"to satisfy constraint: Member must satisfy enum value set: {[PURE, PREHASHED]}"
            )

    def sign(self, message: bytes, signing_algorithm: str) -> bytes:
        self._check(signing_algorithm)
        return self.private_key.sign(message)

    def verify(self, message: bytes, signature: bytes, signing_algorithm: str) -> bool:
        self._check(signing_algorithm)
        try:
            self.private_key.public_key().verify(signature, message)
            return True
        except InvalidSignature:
            return False

    def public_key(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            encoding=serialization.Encoding.DER,
            format=serialization.PublicFormat.SubjectPublicKeyInfo,
        )


# CreateKey validates against KeySpec.key_specs(); Key.__init__ calls models.generate_private_key.
_key_specs = utils.KeySpec.key_specs.__func__
utils.KeySpec.key_specs = classmethod(lambda cls: sorted([*_key_specs(cls), KEY_SPEC]))
_generate = models.generate_private_key
models.generate_private_key = lambda key_spec: Ed25519PrivateKey() if key_spec == KEY_SPEC else _generate(key_spec)

_signing_algorithms = models.Key.signing_algorithms.fget


def _key_signing_algorithms(self):  # type: ignore[no-untyped-def]
    if self.key_spec == KEY_SPEC and self.key_usage == "SIGN_VERIFY":
        return [PURE, PREHASHED]
    return _signing_algorithms(self)


models.Key.signing_algorithms = property(_key_signing_algorithms)


def _require_raw(original):  # type: ignore[no-untyped-def]
    """Sign/Verify: ED25519_SHA_512 requires MessageType RAW (KMS API reference, Sign, MessageType)."""

    def handler(self):  # type: ignore[no-untyped-def]
        algorithm = self._get_param("SigningAlgorithm")
        message_type = self._get_param("MessageType") or "RAW"
        if algorithm == PURE and message_type != "RAW":
            raise ValidationException(
                f"{PURE} signing algorithm requires MessageType RAW, not {message_type}"
            )
        if algorithm == PREHASHED and message_type != "DIGEST":
            raise ValidationException(
                f"{PREHASHED} signing algorithm requires MessageType DIGEST, not {message_type}"
            )
        return original(self)

    return handler


_get_public_key = responses.KmsResponse.get_public_key


def _get_public_key_with_spec(self):  # type: ignore[no-untyped-def]
    body = json.loads(_get_public_key(self))
    if body.get("CustomerMasterKeySpec") == KEY_SPEC:
        body["KeySpec"] = KEY_SPEC
    return json.dumps(body)


responses.KmsResponse.get_public_key = _get_public_key_with_spec
responses.KmsResponse.sign = _require_raw(responses.KmsResponse.sign)
responses.KmsResponse.verify = _require_raw(responses.KmsResponse.verify)

_conditional_creates = threading.Lock()
_put_object = s3_responses.S3Response.put_object


def _put_object_atomic(self):  # type: ignore[no-untyped-def]
    if self.headers.get("If-None-Match") != "*":
        return _put_object(self)
    with _conditional_creates:
        return _put_object(self)


s3_responses.S3Response.put_object = _put_object_atomic

if __name__ == "__main__":
    from moto.server import main

    sys.exit(main())
