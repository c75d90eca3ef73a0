#!/usr/bin/env python3
"""An independent verifier for the Vouch protocol, written from proto/SPEC.md.

It does not call any Rust code. It needs Python 3.11+, the standard library and the
`cryptography` package (for ed25519; the strict-verification checks that RFC 8032
libraries differ on are done here in pure Python, see `verify_signature`).

Usage:
  vouch_verify.py vectors proto/testdata/vectors.json
  vouch_verify.py job --url http://127.0.0.1:8080 --job-id ID [--api-key K] [--operator HEX]
  vouch_verify.py job --file job.json [--output-file out.bin] [--operator HEX]

Library functions: jcs, job_id, validate_spec, encode_receipt, decode_receipt,
signing_root, verify_signature, verify_signed_receipt, verify_receipt_json, verify_job,
network_id.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

# --- SPEC.md §1: conventions -------------------------------------------------------------

TAG_JOB = b"vouch/job/v1"
TAG_RECEIPT = b"vouch/receipt/v1"
TAG_NETWORK = b"vouch/network/v1"

MAX_SAFE_INTEGER = (1 << 53) - 1
U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1
U128_MAX = (1 << 128) - 1
I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1

# --- SPEC.md §2: job specs ---------------------------------------------------------------

MAX_SPEC_BYTES = 64 * 1024
MAX_ARGS = 256
MAX_ENV = 256
MAX_ARG_BYTES = 4096
MAX_NONCE_BYTES = 128
MAX_REPLICAS = 16

SPEC_FIELDS = (
    "command",
    "determinism",
    "env",
    "image",
    "input_digest",
    "limits",
    "nonce",
    "replicas",
    "value_at_risk",
)
LIMIT_FIELDS = (
    "cpu_millis",
    "memory_bytes",
    "output_bytes",
    "pids",
    "timeout_ms",
    "tmpfs_bytes",
)
DETERMINISM = ("deterministic", "nondeterministic")

# --- SPEC.md §3: receipts ----------------------------------------------------------------

RECEIPT_LEN = 260
SIGNATURE_LEN = 64
SIGNED_RECEIPT_LEN = RECEIPT_LEN + SIGNATURE_LEN

# (name, width, kind). kind: "hex32" (64 hex chars in JSON), "digest" ("sha256:" + hex),
# "u64" (big-endian unsigned), "i32" (big-endian two's complement).
RECEIPT_FIELDS: tuple[tuple[str, int, str], ...] = (
    ("network_id", 32, "hex32"),
    ("operator", 32, "hex32"),
    ("sequence", 8, "u64"),
    ("job_id", 32, "hex32"),
    ("image", 32, "digest"),
    ("input_digest", 32, "digest"),
    ("output_digest", 32, "digest"),
    ("output_len", 8, "u64"),
    ("exit_code", 4, "i32"),
    ("trace_root", 32, "hex32"),
    ("trace_len", 8, "u64"),
    ("issued_at_ms", 8, "u64"),
)
RECEIPT_OFFSETS: dict[str, tuple[int, int]] = {}
_off = 0
for _name, _width, _kind in RECEIPT_FIELDS:
    RECEIPT_OFFSETS[_name] = (_off, _width)
    _off += _width
assert _off == RECEIPT_LEN, _off
del _off, _name, _width, _kind

RECEIPT_JSON_FIELDS = tuple(n for n, _, _ in RECEIPT_FIELDS) + (
    "signing_root",
    "signature",
    "encoded",
)

_HEX64 = re.compile(r"[0-9a-f]{64}")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class VerifyError(ValueError):
    """Something does not verify; the message says what, in terms a person can act on."""


# --- strict JSON parsing -----------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise VerifyError(f"duplicate JSON object key {k!r}")
        out[k] = v
    return out


def _no_constants(name: str) -> Any:
    raise VerifyError(f"{name} is not JSON")


def loads(text: str | bytes) -> Any:
    """Parses JSON refusing duplicate keys and NaN/Infinity (Python accepts both by default)."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except json.JSONDecodeError as e:
        raise VerifyError(f"not JSON: {e}") from None
    except UnicodeDecodeError as e:
        raise VerifyError(f"not UTF-8: {e}") from None


# --- RFC 8785 for the restricted subset (SPEC.md §2.3) -----------------------------------

_SHORT_ESCAPES = {
    0x08: "\\b",
    0x09: "\\t",
    0x0A: "\\n",
    0x0C: "\\f",
    0x0D: "\\r",
    0x22: '\\"',
    0x5C: "\\\\",
}


def _jcs_string(s: str, out: list[str]) -> None:
    out.append('"')
    for ch in s:
        o = ord(ch)
        esc = _SHORT_ESCAPES.get(o)
        if esc is not None:
            out.append(esc)
        elif o < 0x20:
            out.append(f"\\u{o:04x}")
        elif 0xD800 <= o <= 0xDFFF:
            raise VerifyError(
                f"string contains a lone surrogate U+{o:04X}, which is not Unicode text"
            )
        else:
            out.append(ch)
    out.append('"')


def _utf16_key(k: str) -> bytes:
    # Big-endian UTF-16 bytes compare exactly like sequences of UTF-16 code units.
    try:
        return k.encode("utf-16-be")
    except UnicodeEncodeError:
        raise VerifyError(f"object key {k!r} contains a lone surrogate") from None


def _jcs_value(v: Any, out: list[str]) -> None:
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif type(v) is int:
        if not 0 <= v <= MAX_SAFE_INTEGER:
            raise VerifyError(
                f"number {v} is not an integer in 0..=2^53-1; encode it as a decimal string"
            )
        out.append(str(v))
    elif isinstance(v, float):
        raise VerifyError(
            f"number {v!r} is not an integer in 0..=2^53-1 (floats are not allowed)"
        )
    elif isinstance(v, str):
        _jcs_string(v, out)
    elif isinstance(v, (list, tuple)):
        out.append("[")
        for i, item in enumerate(v):
            if i:
                out.append(",")
            _jcs_value(item, out)
        out.append("]")
    elif isinstance(v, dict):
        for k in v:
            if not isinstance(k, str):
                raise VerifyError(f"object key {k!r} is not a string")
        out.append("{")
        for i, k in enumerate(sorted(v, key=_utf16_key)):
            if i:
                out.append(",")
            _jcs_string(k, out)
            out.append(":")
            _jcs_value(v[k], out)
        out.append("}")
    else:
        raise VerifyError(f"cannot canonicalize a {type(v).__name__}")


def jcs(value: Any) -> bytes:
    """RFC 8785 canonical JSON of `value`, for the subset Vouch signs: objects, arrays,
    strings, booleans, null and integers in 0..2^53-1 (anything else is refused)."""
    out: list[str] = []
    _jcs_value(value, out)
    return "".join(out).encode("utf-8")


# --- identifiers -------------------------------------------------------------------------


def _hex32(what: str, s: Any) -> bytes:
    if not isinstance(s, str):
        raise VerifyError(f"{what}: expected a string of 64 lowercase hex characters")
    if not _HEX64.fullmatch(s):
        raise VerifyError(f"{what}: expected 64 lowercase hex characters, got {s!r}")
    return bytes.fromhex(s)


def _digest(what: str, s: Any) -> bytes:
    if not isinstance(s, str) or not s.startswith("sha256:"):
        raise VerifyError(f'{what}: must be "sha256:" followed by 64 lowercase hex characters')
    return _hex32(what, s[len("sha256:") :])


def _uint(what: str, v: Any, hi: int, lo: int = 0) -> int:
    if type(v) is not int:
        raise VerifyError(f"{what}: expected an integer, got {json.dumps(v)}")
    if not lo <= v <= hi:
        raise VerifyError(f"{what}: {v} is outside {lo}..={hi}")
    return v


def network_id(name_or_hex: str) -> bytes:
    """The network id: 64 lowercase hex characters are the id itself; anything else is a
    network name, hashed as SHA-256("vouch/network/v1" || UTF-8 name)."""
    if _HEX64.fullmatch(name_or_hex):
        return bytes.fromhex(name_or_hex)
    return hashlib.sha256(TAG_NETWORK + name_or_hex.encode("utf-8")).digest()


# --- SPEC.md §2: job spec validation and job id ------------------------------------------


def _str_list(what: str, v: Any, max_items: int) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise VerifyError(f"{what}: expected an array of strings")
    if len(v) > max_items:
        raise VerifyError(f"{what} has {len(v)} entries, at most {max_items}")
    return v


def validate_spec(spec: Any) -> None:
    """Checks every rule of SPEC.md §2.2; raises VerifyError on the first broken one."""
    if not isinstance(spec, dict):
        raise VerifyError("job spec: expected a JSON object")
    keys = set(spec)
    if keys - set(SPEC_FIELDS):
        raise VerifyError(f"job spec: unknown field(s) {sorted(keys - set(SPEC_FIELDS))}")
    if set(SPEC_FIELDS) - keys:
        raise VerifyError(f"job spec: missing field(s) {sorted(set(SPEC_FIELDS) - keys)}")
    _digest("image", spec["image"])
    _digest("input_digest", spec["input_digest"])
    command = _str_list("command", spec["command"], MAX_ARGS)
    for a in command:
        if len(a.encode("utf-8", "surrogatepass")) > MAX_ARG_BYTES:
            raise VerifyError(f"a command argument is over {MAX_ARG_BYTES} bytes")
        if "\0" in a:
            raise VerifyError("command arguments must not contain NUL")
    env = _str_list("env", spec["env"], MAX_ENV)
    prev: bytes | None = None
    for e in env:
        if len(e.encode("utf-8", "surrogatepass")) > MAX_ARG_BYTES or "\0" in e:
            raise VerifyError(f"env entry is over {MAX_ARG_BYTES} bytes or contains NUL")
        if "=" not in e:
            raise VerifyError(f"env entry {e!r} is not KEY=VALUE")
        k = e.split("=", 1)[0]
        if not _ENV_KEY.fullmatch(k):
            raise VerifyError(f"env key {k!r} must match [A-Za-z_][A-Za-z0-9_]*")
        kb = k.encode("ascii")
        if prev is not None and prev >= kb:
            raise VerifyError(
                f"env must be sorted by key with unique keys ({prev.decode()!r} then {k!r})"
            )
        prev = kb
    limits = spec["limits"]
    if not isinstance(limits, dict):
        raise VerifyError("limits: expected a JSON object")
    if set(limits) != set(LIMIT_FIELDS):
        raise VerifyError(
            f"limits: fields must be exactly {list(LIMIT_FIELDS)}, got {sorted(limits)}"
        )
    for name in LIMIT_FIELDS:
        _uint(f"limits.{name}", limits[name], MAX_SAFE_INTEGER, lo=1)
    if spec["determinism"] not in DETERMINISM:
        raise VerifyError(f"determinism must be one of {list(DETERMINISM)}")
    var = spec["value_at_risk"]
    if (
        not isinstance(var, str)
        or len(var) > 39
        or not _DECIMAL.fullmatch(var)
        or int(var) > U128_MAX
    ):
        raise VerifyError(
            f"value_at_risk {var!r} must be a decimal string without sign or leading zeros, "
            "at most 2^128-1"
        )
    _uint("replicas", spec["replicas"], MAX_REPLICAS, lo=1)
    nonce = spec["nonce"]
    if not isinstance(nonce, str):
        raise VerifyError("nonce: expected a string")
    if len(nonce.encode("utf-8", "surrogatepass")) > MAX_NONCE_BYTES:
        raise VerifyError(f"nonce is over {MAX_NONCE_BYTES} bytes")


def canonical_spec(spec: dict) -> bytes:
    """Validates `spec` and returns its canonical bytes (what the job id hashes)."""
    validate_spec(spec)
    canonical = jcs(spec)
    if len(canonical) > MAX_SPEC_BYTES:
        raise VerifyError(
            f"job spec: {len(canonical)} bytes is over the limit of {MAX_SPEC_BYTES} bytes"
        )
    return canonical


def job_id(spec: dict) -> str:
    """SHA-256("vouch/job/v1" || JCS(spec)) as 64 lowercase hex. Validates first."""
    return hashlib.sha256(TAG_JOB + canonical_spec(spec)).hexdigest()


# --- SPEC.md §3: receipts ----------------------------------------------------------------


def encode_receipt(fields: dict) -> bytes:
    """The 260-byte receipt from its fields, written as in the JSON view (hex strings,
    "sha256:" digests, integers). Keys other than the twelve receipt fields are ignored."""
    if not isinstance(fields, dict):
        raise VerifyError("receipt: expected a JSON object")
    out = bytearray()
    for name, width, kind in RECEIPT_FIELDS:
        if name not in fields:
            raise VerifyError(f"receipt: missing field {name}")
        v = fields[name]
        if kind == "hex32":
            out += _hex32(name, v)
        elif kind == "digest":
            out += _digest(name, v)
        elif kind == "u64":
            out += _uint(name, v, U64_MAX).to_bytes(8, "big")
        else:
            out += _uint(name, v, I32_MAX, lo=I32_MIN).to_bytes(4, "big", signed=True)
    assert len(out) == RECEIPT_LEN
    return bytes(out)


def decode_receipt(encoded: bytes) -> dict:
    """The twelve fields of a 260-byte receipt, written as in the JSON view."""
    if len(encoded) != RECEIPT_LEN:
        raise VerifyError(f"receipt: expected {RECEIPT_LEN} bytes, got {len(encoded)}")
    out: dict[str, Any] = {}
    for name, width, kind in RECEIPT_FIELDS:
        off, _ = RECEIPT_OFFSETS[name]
        b = encoded[off : off + width]
        if kind == "hex32":
            out[name] = b.hex()
        elif kind == "digest":
            out[name] = "sha256:" + b.hex()
        elif kind == "u64":
            out[name] = int.from_bytes(b, "big")
        else:
            out[name] = int.from_bytes(b, "big", signed=True)
    return out


def signing_root(encoded: bytes) -> bytes:
    """SHA-256("vouch/receipt/v1" || the 260 receipt bytes)."""
    if len(encoded) != RECEIPT_LEN:
        raise VerifyError(f"receipt: expected {RECEIPT_LEN} bytes, got {len(encoded)}")
    return hashlib.sha256(TAG_RECEIPT + encoded).digest()


# --- ed25519 with strict verification (SPEC.md §1.4) -------------------------------------
#
# OpenSSL (behind `cryptography`) implements RFC 8032 verification: S < L, canonical R
# (it compares encodings), the unbatched equation. The Rust side uses ed25519-dalek's
# verify_strict, which additionally refuses public keys and R values of small order. Those
# two checks are done here, with a few lines of curve arithmetic, before OpenSSL is asked.

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _decompress(b: bytes) -> tuple[int, int] | None:
    """Decodes a point like curve25519-dalek: y is taken mod p (non-canonical y is read,
    not refused), x is recovered and negated per the sign bit. None if not on the curve."""
    n = int.from_bytes(b, "little")
    sign = n >> 255
    y = (n & ((1 << 255) - 1)) % _P
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    x2 = u * pow(v, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
        if (x * x - x2) % _P != 0:
            return None
    if (x & 1) != sign:
        x = (-x) % _P
    return x, y


def _add(p1: tuple[int, int], p2: tuple[int, int]) -> tuple[int, int]:
    # Complete twisted Edwards addition for a = -1 (d is not a square, so no exceptions).
    (x1, y1), (x2, y2) = p1, p2
    t = _D * x1 * x2 * y1 * y2 % _P
    x3 = (x1 * y2 + x2 * y1) * pow(1 + t, _P - 2, _P) % _P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, _P - 2, _P) % _P
    return x3, y3


def is_small_order(encoded_point: bytes) -> bool:
    """Whether the 32-byte encoding decodes to a point of order dividing 8 (a weak key)."""
    pt = _decompress(encoded_point)
    if pt is None:
        return False
    for _ in range(3):
        pt = _add(pt, pt)
    return pt == (0, 1)


def verify_signature(pubkey: bytes, message: bytes, signature: bytes) -> None:
    """ed25519 verification with ed25519-dalek `verify_strict` semantics: the key must be a
    valid point not of small order, R must not be of small order, S must be below L, and
    the RFC 8032 equation must hold with R compared as its canonical encoding."""
    if len(pubkey) != 32:
        raise VerifyError(f"operator key: expected 32 bytes, got {len(pubkey)}")
    if len(signature) != SIGNATURE_LEN:
        raise VerifyError(f"signature: expected {SIGNATURE_LEN} bytes, got {len(signature)}")
    if _decompress(pubkey) is None:
        raise VerifyError("invalid ed25519 public key (not a curve point)")
    if is_small_order(pubkey):
        raise VerifyError("invalid ed25519 public key (small order: refused by strict verification)")
    if _decompress(signature[:32]) is None or is_small_order(signature[:32]):
        raise VerifyError(
            "signature does not verify (R is not a point, or of small order: refused by "
            "strict verification)"
        )
    if int.from_bytes(signature[32:], "little") >= _L:
        raise VerifyError("signature does not verify (S is not below the group order L)")
    try:
        key = Ed25519PublicKey.from_public_bytes(pubkey)
    except ValueError:
        raise VerifyError("invalid ed25519 public key") from None
    try:
        key.verify(signature, message)
    except InvalidSignature:
        raise VerifyError(
            "signature does not verify for this operator key and signing root"
        ) from None


def verify_signed_receipt(signed: bytes) -> dict:
    """Decodes exactly 324 bytes (receipt || signature), verifies the signature against the
    operator key inside, and returns the receipt's fields."""
    if len(signed) != SIGNED_RECEIPT_LEN:
        raise VerifyError(
            f"signed receipt: expected {SIGNED_RECEIPT_LEN} bytes, got {len(signed)}"
        )
    receipt, signature = signed[:RECEIPT_LEN], signed[RECEIPT_LEN:]
    fields = decode_receipt(receipt)
    verify_signature(bytes.fromhex(fields["operator"]), signing_root(receipt), signature)
    return fields


# --- SPEC.md §4: the JSON view -----------------------------------------------------------


def verify_receipt_json(r: dict) -> None:
    """Verifies a receipt's JSON view: exactly the fifteen fields; `encoded` is 324 bytes of
    lowercase hex; every restated field (and signing_root, signature) matches it; the
    ed25519 signature over the signing root verifies under `operator`."""
    if not isinstance(r, dict):
        raise VerifyError("receipt: expected a JSON object")
    keys = set(r)
    if keys - set(RECEIPT_JSON_FIELDS):
        raise VerifyError(f"receipt: unknown field(s) {sorted(keys - set(RECEIPT_JSON_FIELDS))}")
    if set(RECEIPT_JSON_FIELDS) - keys:
        raise VerifyError(
            f"receipt: missing field(s) {sorted(set(RECEIPT_JSON_FIELDS) - keys)}"
        )
    enc = r["encoded"]
    if not isinstance(enc, str) or not re.fullmatch(r"(?:[0-9a-f]{2})*", enc):
        raise VerifyError("encoded: expected lowercase hex with an even number of digits")
    signed = bytes.fromhex(enc)
    if len(signed) != SIGNED_RECEIPT_LEN:
        raise VerifyError(
            f"encoded: expected {SIGNED_RECEIPT_LEN} bytes (260-byte receipt + 64-byte "
            f"signature), got {len(signed)}"
        )
    receipt, signature = signed[:RECEIPT_LEN], signed[RECEIPT_LEN:]
    restated = encode_receipt(r)
    if restated != receipt:
        decoded = decode_receipt(receipt)
        differ = [n for n, _, _ in RECEIPT_FIELDS if decoded[n] != r[n]]
        raise VerifyError(
            f"receipt fields do not match the encoded receipt: {', '.join(differ)}"
        )
    root = signing_root(receipt)
    if r["signing_root"] != root.hex():
        raise VerifyError("signing_root does not match SHA-256(\"vouch/receipt/v1\" || receipt)")
    if r["signature"] != signature.hex():
        raise VerifyError("signature does not match the last 64 bytes of encoded")
    verify_signature(receipt[32:64], root, signature)


def verify_job(
    job: dict,
    output: bytes | None,
    operator: str | None,
    network: str | None = None,
) -> list[str]:
    """Verifies a job as `GET /v1/jobs/{id}` returns it (SPEC.md §4.3). `output` is the
    body of `GET /v1/jobs/{id}/output` (None: not checked); `operator` the operator key
    the client expects (hex; None: not checked); `network` a network name or id.
    Returns one line per check made; raises VerifyError on the first failure."""
    done: list[str] = []
    if not isinstance(job, dict):
        raise VerifyError("job: expected a JSON object")
    for k in ("job_id", "status", "spec"):
        if k not in job:
            raise VerifyError(f"job: missing field {k}")
    claimed = _hex32("job_id", job["job_id"])
    spec = job["spec"]
    computed = job_id(spec)
    if computed != claimed.hex():
        raise VerifyError(
            f"job id mismatch: the spec hashes to {computed}, the job says {job['job_id']}"
        )
    done.append(f'job id: ok ({computed} = SHA-256("vouch/job/v1" || JCS(spec)))')
    status = job["status"]
    receipt = job.get("receipt")
    if receipt is None:
        reason = f" ({job['reason']})" if job.get("reason") else ""
        raise VerifyError(f"the job has no receipt (status {status}{reason})")
    if status != "succeeded":
        raise VerifyError(f"the job carries a receipt but its status is {status!r}")
    verify_receipt_json(receipt)
    done.append(
        f"receipt: ok (encoded matches its fields; signature by {receipt['operator']}, "
        f"sequence {receipt['sequence']})"
    )
    for field in ("job_id", "image", "input_digest"):
        mine = computed if field == "job_id" else spec[field]
        if receipt[field] != mine:
            raise VerifyError(
                f"the receipt is not about this spec: receipt {field} {receipt[field]}, "
                f"spec {mine}"
            )
    done.append("binding: ok (receipt job_id, image and input_digest are the spec's)")
    for field in ("exit_code", "output_len"):
        if field in job and job[field] is not None and job[field] != receipt[field]:
            raise VerifyError(
                f"job {field} {job[field]!r} differs from the signed {receipt[field]!r}"
            )
    if operator is not None:
        want = operator.strip().lower()
        _hex32("operator", want)
        if receipt["operator"] != want:
            raise VerifyError(f"signed by {receipt['operator']}, expected {want}")
        done.append("operator: ok (the expected key signed)")
    else:
        done.append(
            "operator: NOT CHECKED (pass --operator to pin the key you trust; otherwise "
            "the signature only shows that the key named in the receipt signed it)"
        )
    if network is not None:
        want_net = network_id(network).hex()
        if receipt["network_id"] != want_net:
            raise VerifyError(f"receipt is for network {receipt['network_id']}, expected {want_net}")
        done.append(f"network: ok ({want_net})")
    if output is not None:
        got = "sha256:" + hashlib.sha256(output).hexdigest()
        if len(output) != receipt["output_len"] or got != receipt["output_digest"]:
            raise VerifyError(
                f"output ({len(output)} bytes, {got}) does not match the signed "
                f"output_len {receipt['output_len']} / output_digest {receipt['output_digest']}"
            )
        done.append(f"output: ok ({len(output)} bytes, {got})")
    else:
        done.append("output: NOT CHECKED (no output given)")
    done.append(f"exit code: {receipt['exit_code']} (signed)")
    return done


# --- SPEC.md §7: test vectors ------------------------------------------------------------


def check_vectors(path: str | Path, log=print) -> tuple[int, int]:
    """Checks every vector in vectors.json; logs a line per vector; returns (passed, failed)."""
    doc = loads(Path(path).read_bytes())
    passed = failed = 0

    def run(label: str, fn) -> None:
        nonlocal passed, failed
        try:
            detail = fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported, none is fatal
            failed += 1
            log(f"FAIL {label}: {type(e).__name__}: {e}")
        else:
            passed += 1
            log(f"ok   {label}{': ' + detail if detail else ''}")

    def tags() -> str:
        want = {"job": TAG_JOB, "receipt": TAG_RECEIPT, "network": TAG_NETWORK}
        got = {k: v.encode("ascii") for k, v in doc["tags"].items()}
        if got != want:
            raise VerifyError(f"tags {doc['tags']} differ from SPEC.md §1.5")
        return "vouch/job/v1, vouch/receipt/v1, vouch/network/v1"

    run("tags", tags)

    for i, v in enumerate(doc["jobs"]):

        def one_job(v=v) -> str:
            canonical = canonical_spec(v["spec"])
            if canonical != v["canonical"].encode("utf-8"):
                raise VerifyError(
                    f"canonical form differs:\n  got  {canonical.decode()}\n  want {v['canonical']}"
                )
            jid = job_id(v["spec"])
            if jid != v["job_id"]:
                raise VerifyError(f"job id {jid}, vector says {v['job_id']}")
            return f"{jid} (canonical {len(canonical)} bytes)"

        run(f"job[{i}]", one_job)

    for i, v in enumerate(doc["receipts"]):

        def one_receipt(v=v) -> str:
            r = v["receipt"]
            verify_receipt_json(r)
            encoded = encode_receipt(r)
            if encoded.hex() != v["encoded_receipt"]:
                raise VerifyError("encode_receipt(fields) differs from encoded_receipt")
            root = signing_root(encoded)
            if root.hex() != v["signing_root"] or r["signing_root"] != v["signing_root"]:
                raise VerifyError(f"signing root {root.hex()}, vector says {v['signing_root']}")
            if (encoded + bytes.fromhex(v["signature"])).hex() != v["signed_receipt"]:
                raise VerifyError("encoded_receipt || signature differs from signed_receipt")
            if r["encoded"] != v["signed_receipt"]:
                raise VerifyError("receipt.encoded differs from signed_receipt")
            verify_signed_receipt(bytes.fromhex(v["signed_receipt"]))
            if network_id(v["network_name"]).hex() != r["network_id"]:
                raise VerifyError(f"network id is not SHA-256(tag || {v['network_name']!r})")
            sk = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(v["secret_key_seed"]))
            pub = sk.public_key().public_bytes_raw().hex()
            if pub != r["operator"]:
                raise VerifyError(f"seed gives public key {pub}, receipt says {r['operator']}")
            if sk.sign(root).hex() != v["signature"]:
                raise VerifyError("re-signing the root with the seed gives another signature")
            return f"root {root.hex()[:16]}…, signature ok, re-signed identically"

        run(f"receipt[{i}]", one_receipt)

    for i, v in enumerate(doc["invalid_receipts"]):

        def one_invalid(v=v) -> str:
            try:
                signed = bytes.fromhex(v["signed_receipt"])
                verify_signed_receipt(signed)
            except (VerifyError, ValueError) as e:
                return f"rejected ({v['why']}): {e}"
            raise VerifyError(f"accepted an invalid receipt ({v['why']})")

        run(f"invalid[{i}]", one_invalid)
    return passed, failed


# --- command line ------------------------------------------------------------------------


def _http_get(url: str, api_key: str | None, timeout: float) -> tuple[bytes, dict]:
    req = urllib.request.Request(url, headers={"Accept": "application/json, */*"})
    if api_key:
        req.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            err = json.loads(body)["error"]
            msg = f"{err['code']}: {err['message']}"
        except Exception:  # noqa: BLE001 - any non-API error body
            msg = body[:200].decode("utf-8", "replace")
        raise VerifyError(f"GET {url} answered {e.code}: {msg}") from None
    except urllib.error.URLError as e:
        raise VerifyError(f"GET {url} failed: {e.reason}") from None


def _cmd_vectors(args: argparse.Namespace) -> int:
    passed, failed = check_vectors(args.path)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def _cmd_job(args: argparse.Namespace) -> int:
    try:
        if args.file:
            job = loads(Path(args.file).read_bytes())
            output = Path(args.output_file).read_bytes() if args.output_file else None
            source = args.file
        else:
            if not args.job_id:
                raise VerifyError("--url needs --job-id")
            _hex32("--job-id", args.job_id)
            base = args.url.rstrip("/")
            q = f"?wait_ms={args.wait_ms}" if args.wait_ms else ""
            url = f"{base}/v1/jobs/{urllib.parse.quote(args.job_id)}{q}"
            body, _ = _http_get(url, args.api_key, args.timeout)
            job = loads(body)
            output = None
            if isinstance(job, dict) and job.get("status") == "succeeded":
                output, _ = _http_get(
                    f"{base}/v1/jobs/{urllib.parse.quote(args.job_id)}/output",
                    args.api_key,
                    args.timeout,
                )
            source = url
        print(f"job: {source}")
        for line in verify_job(job, output, args.operator, args.network):
            print(line)
    except (VerifyError, OSError) as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    print("verified")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="vouch_verify.py",
        description="Independent verifier for Vouch job ids and receipts (proto/SPEC.md).",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("vectors", help="check proto/testdata/vectors.json")
    v.add_argument("path")
    v.set_defaults(func=_cmd_vectors)
    j = sub.add_parser("job", help="verify a job, its receipt and its output")
    src = j.add_mutually_exclusive_group(required=True)
    src.add_argument("--url", help="node base URL, e.g. http://127.0.0.1:8080")
    src.add_argument("--file", help="a saved GET /v1/jobs/{id} response")
    j.add_argument("--job-id", help="job id (with --url)")
    j.add_argument("--api-key", help="bearer token (with --url)")
    j.add_argument("--wait-ms", type=int, default=0, help="long-poll the job (with --url)")
    j.add_argument("--timeout", type=float, default=70.0, help="HTTP timeout in seconds")
    j.add_argument("--output-file", help="the job's output bytes (with --file)")
    j.add_argument("--operator", help="the operator key you expect (64 hex)")
    j.add_argument("--network", help="the network name or 64-hex id you expect")
    j.set_defaults(func=_cmd_job)
    args = p.parse_args(argv)
    if args.cmd == "job" and args.output_file and not args.file:
        p.error("--output-file goes with --file (with --url the output is fetched)")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
