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
network_id; for inference (SPEC.md §7): normalize_chat_request, verify_chat_completion,
verify_stream, parse_sse, merkle_root, merkle_proof, verify_merkle_opening,
verify_trace_opening, verify_trace, decode_trace_leaf.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
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


# --- SPEC.md §7: inference (chat completions, traces, Merkle openings) --------------------

TAG_TRACE = b"vouch/trace/v1"
MAX_LEAF_BYTES = 256
TRACE_LEAF_LEN = 20
ZERO_ROOT = bytes(32)

MAX_PROMPT_BYTES = 32 * 1024
DEFAULT_MAX_TOKENS = 256
MAX_STOPS = 4
MAX_STOP_BYTES = 64

# Every field an OpenAI chat request may carry on a Vouch node (§7.1); others are refused.
CHAT_REQUEST_FIELDS = (
    "frequency_penalty",
    "logprobs",
    "max_completion_tokens",
    "max_tokens",
    "messages",
    "metadata",
    "model",
    "n",
    "presence_penalty",
    "seed",
    "stop",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "user",
)
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
CHAT_OUTPUT_FIELDS = ("content", "finish_reason", "model", "tokens", "usage")
USAGE_FIELDS = ("completion_tokens", "prompt_tokens", "total_tokens")
FINISH_REASONS = ("stop", "length")


class ChatRequestError(VerifyError):
    """A chat request a node refuses (§7.1). `param` names the field, as in OpenAI's error
    object; `code` is the node's error code (`invalid_value` or `model_not_found`)."""

    def __init__(self, param: str, message: str, code: str = "invalid_value") -> None:
        super().__init__(f"{param}: {message}" if param else message)
        self.param = param
        self.code = code


_MISSING = object()


def _round_half_away(x: float) -> int:
    """Rounds a non-negative double to the nearest integer, halves away from zero (Rust's
    f64::round). Python's round() rounds halves to even, which differs at x.5."""
    f = math.floor(x)
    return int(f) + 1 if x - f >= 0.5 else int(f)


def _utf8_len(s: str) -> int:
    return len(s.encode("utf-8", "surrogatepass"))


def normalize_chat_request(req: Any, models: dict[str, int] | None = None) -> bytes:
    """The workload input a node derives from an OpenAI chat request (SPEC.md §7.1): the
    RFC 8785 form of {max_tokens, messages: [{content, role}], model, seed, stop,
    temperature_milli, top_p_milli}.

    `models` maps the node's model names to their largest `max_tokens` (as `GET /v1/models`
    reports them in `vouch.max_tokens`); with it, an unknown model and a too large
    `max_tokens` are refused, and the default `max_tokens` is min(256, the model's limit).
    Without it, any model name is taken and the default is 256. Raises ChatRequestError for
    a request the node refuses, naming the same `param`."""
    if not isinstance(req, dict):
        raise ChatRequestError("", "the request body must be a JSON object")
    for k in sorted(req, key=lambda k: k.encode("utf-8", "surrogatepass")):
        if k not in CHAT_REQUEST_FIELDS:
            raise ChatRequestError(k, f"Unrecognized request argument supplied: {k}")

    def present(key: str) -> bool:
        return req.get(key) is not None

    model = req.get("model", _MISSING)
    if model is _MISSING:
        raise ChatRequestError("model", "you must provide a model parameter")
    if not isinstance(model, str):
        raise ChatRequestError("model", "model must be a string")
    model_limit: int | None = None
    if models is not None:
        if model not in models:
            raise ChatRequestError(
                "model", f"the model {model!r} does not exist", "model_not_found"
            )
        model_limit = models[model]

    messages = req.get("messages", _MISSING)
    if messages is _MISSING:
        raise ChatRequestError("messages", "missing required parameter: messages")
    if not isinstance(messages, list):
        raise ChatRequestError("messages", "messages must be an array")
    if not messages:
        raise ChatRequestError("messages", "messages must not be empty")
    normalized: list[dict[str, str]] = []
    prompt_bytes = 0
    for i, m in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(m, dict):
            raise ChatRequestError(param, "each message must be an object")
        role = m.get("role")
        if not isinstance(role, str):
            raise ChatRequestError(f"{param}.role", "each message needs a role")
        if role not in _ROLES:
            raise ChatRequestError(f"{param}.role", f"role {role!r} is not supported")
        role = _ROLES[role]
        content = m.get("content", _MISSING)
        if isinstance(content, str):
            text = content
        elif isinstance(content, list):
            parts: list[str] = []
            for p in content:
                if (
                    not isinstance(p, dict)
                    or p.get("type") != "text"
                    or not isinstance(p.get("text"), str)
                ):
                    raise ChatRequestError(
                        f"{param}.content", "only text content parts are supported"
                    )
                parts.append(p["text"])
            text = "".join(parts)
        elif (content is None or content is _MISSING) and role == "assistant":
            text = ""
        else:
            raise ChatRequestError(
                f"{param}.content", "content must be a string or an array of text parts"
            )
        prompt_bytes += _utf8_len(text)
        normalized.append({"content": text, "role": role})
    if prompt_bytes > MAX_PROMPT_BYTES:
        raise ChatRequestError(
            "messages", f"the prompt has {prompt_bytes} bytes, at most {MAX_PROMPT_BYTES}"
        )

    def uint(key: str) -> int | None:
        v = req.get(key)
        if v is None:
            return None
        if type(v) is not int or not 0 <= v <= MAX_SAFE_INTEGER:
            raise ChatRequestError(key, f"{key} must be a non-negative integer")
        return v

    def number(key: str, lo: float, hi: float, default: float) -> float:
        v = req.get(key)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ChatRequestError(key, f"{key} must be a number between {lo} and {hi}")
        try:
            x = float(v)
        except OverflowError:
            raise ChatRequestError(key, f"{key} must be a number between {lo} and {hi}") from None
        if not lo <= x <= hi:
            raise ChatRequestError(key, f"{key} must be a number between {lo} and {hi}")
        return x

    max_completion_tokens = uint("max_completion_tokens")
    max_tokens = uint("max_tokens")
    if max_completion_tokens is not None:
        max_tokens = max_completion_tokens
    if max_tokens is None:
        max_tokens = (
            DEFAULT_MAX_TOKENS if model_limit is None else min(DEFAULT_MAX_TOKENS, model_limit)
        )
    if max_tokens == 0 or (model_limit is not None and max_tokens > model_limit):
        param = "max_completion_tokens" if "max_completion_tokens" in req else "max_tokens"
        raise ChatRequestError(param, f"{param} must be between 1 and the model's limit")
    temperature = number("temperature", 0.0, 2.0, 1.0)
    top_p = number("top_p", 0.0, 1.0, 1.0)
    if top_p == 0.0:
        raise ChatRequestError("top_p", "top_p must be greater than 0")
    seed = uint("seed")
    n = uint("n")
    if n is not None and n != 1:
        raise ChatRequestError("n", "a node generates one choice per request (n = 1)")
    for key in ("presence_penalty", "frequency_penalty"):
        if number(key, -2.0, 2.0, 0.0) != 0.0:
            raise ChatRequestError(key, f"{key} is not supported; leave it at 0")
    if present("logprobs") and req["logprobs"] is not False:
        raise ChatRequestError("logprobs", "logprobs are not supported")
    stop = req.get("stop")
    if stop is None:
        stops: list[str] = []
    elif isinstance(stop, str):
        stops = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = list(stop)
    else:
        raise ChatRequestError("stop", "stop must be a string or an array of strings")
    if len(stops) > MAX_STOPS or any(s == "" or _utf8_len(s) > MAX_STOP_BYTES for s in stops):
        raise ChatRequestError(
            "stop", f"up to {MAX_STOPS} stop sequences of 1 to {MAX_STOP_BYTES} bytes"
        )
    if present("stream") and not isinstance(req["stream"], bool):
        raise ChatRequestError("stream", "stream must be a boolean")
    if present("user") and not isinstance(req["user"], str):
        raise ChatRequestError("user", "user must be a string")

    return jcs(
        {
            "max_tokens": max_tokens,
            "messages": normalized,
            "model": model,
            "seed": 0 if seed is None else seed,
            "stop": stops,
            "temperature_milli": _round_half_away(temperature * 1000.0),
            "top_p_milli": max(_round_half_away(top_p * 1000.0), 1),
        }
    )


def parse_chat_output(output: bytes) -> dict:
    """Parses and checks the model workload's stdout (SPEC.md §7.2): canonical JSON with
    exactly content, finish_reason, model, tokens and usage, the counts consistent."""
    out = loads(output)
    if not isinstance(out, dict) or set(out) != set(CHAT_OUTPUT_FIELDS):
        got = sorted(out) if isinstance(out, dict) else type(out).__name__
        raise VerifyError(
            f"model output: fields must be exactly {list(CHAT_OUTPUT_FIELDS)}, got {got}"
        )
    if not isinstance(out["content"], str):
        raise VerifyError("model output: content must be a string")
    if out["finish_reason"] not in FINISH_REASONS:
        raise VerifyError(
            f"model output: finish_reason {out['finish_reason']!r} is not stop or length"
        )
    if not isinstance(out["model"], str):
        raise VerifyError("model output: model must be a string")
    tokens = out["tokens"]
    if not isinstance(tokens, list):
        raise VerifyError("model output: tokens must be an array")
    for t in tokens:
        _uint("model output: token", t, U32_MAX)
    usage = out["usage"]
    if not isinstance(usage, dict) or set(usage) != set(USAGE_FIELDS):
        raise VerifyError(f"model output: usage must have exactly {list(USAGE_FIELDS)}")
    for k in USAGE_FIELDS:
        _uint(f"model output: usage.{k}", usage[k], MAX_SAFE_INTEGER)
    if usage["total_tokens"] != usage["prompt_tokens"] + usage["completion_tokens"]:
        raise VerifyError(
            "model output: usage.total_tokens is not prompt_tokens + completion_tokens"
        )
    if usage["completion_tokens"] != len(tokens):
        raise VerifyError(
            f"model output: usage.completion_tokens {usage['completion_tokens']} but "
            f"{len(tokens)} tokens"
        )
    if jcs(out) != output:
        raise VerifyError("model output is not in canonical form (RFC 8785)")
    return out


def verify_vouch(
    vouch: Any,
    request: dict,
    operator: str | None = None,
    model_image: str | None = None,
    network: str | None = None,
    models: dict[str, int] | None = None,
) -> tuple[dict, list[str]]:
    """Checks the `vouch` object of a chat completion (SPEC.md §7.4, steps 1-8) against the
    request the client sent. Returns the parsed model output and one line per check;
    raises VerifyError on the first failure."""
    done: list[str] = []
    if not isinstance(vouch, dict):
        raise VerifyError(
            "the response carries no `vouch` object: there is nothing signed to check"
        )
    for k in ("job_id", "spec", "input", "output", "receipt"):
        if k not in vouch:
            raise VerifyError(f"vouch: missing field {k}")
    spec = vouch["spec"]
    computed = job_id(spec)
    if vouch["job_id"] != computed:
        raise VerifyError(
            f"job id mismatch: the spec hashes to {computed}, vouch.job_id is {vouch['job_id']}"
        )
    done.append(f"job id: ok ({computed})")
    if spec["command"] != [] or spec["env"] != []:
        raise VerifyError("the spec's command and env must be empty for a model job (§7.5)")
    if spec["determinism"] != "deterministic":
        raise VerifyError("a model job must be marked deterministic (§7.5)")
    receipt = vouch["receipt"]
    verify_receipt_json(receipt)
    done.append(f"receipt: ok (signature by {receipt['operator']}, sequence {receipt['sequence']})")
    for field in ("job_id", "image", "input_digest"):
        mine = computed if field == "job_id" else spec[field]
        if receipt[field] != mine:
            raise VerifyError(
                f"the receipt is not about this spec: receipt {field} {receipt[field]}, spec {mine}"
            )
    done.append("binding: ok (receipt job_id, image and input_digest are the spec's)")
    if receipt["exit_code"] != 0:
        raise VerifyError(f"the model exited with {receipt['exit_code']}")

    text_in = vouch["input"]
    if not isinstance(text_in, str):
        raise VerifyError("vouch.input must be a string")
    try:
        input_bytes = text_in.encode("utf-8")
    except UnicodeEncodeError:
        raise VerifyError("vouch.input is not Unicode text") from None
    got = "sha256:" + hashlib.sha256(input_bytes).hexdigest()
    if got != receipt["input_digest"]:
        raise VerifyError(
            f"SHA-256(vouch.input) is {got}, the receipt signs {receipt['input_digest']}"
        )
    mine_in = normalize_chat_request(request, models)
    if input_bytes != mine_in:
        raise VerifyError(
            "the signed input is not the normalization of the request sent:\n"
            f"  signed {text_in}\n  mine   {mine_in.decode('utf-8', 'replace')}"
        )
    done.append(f"input: ok (the request normalizes to the signed input, {got})")

    text_out = vouch["output"]
    if not isinstance(text_out, str):
        raise VerifyError("vouch.output must be a string")
    try:
        output = text_out.encode("utf-8")
    except UnicodeEncodeError:
        raise VerifyError("vouch.output is not Unicode text") from None
    got = "sha256:" + hashlib.sha256(output).hexdigest()
    if len(output) != receipt["output_len"] or got != receipt["output_digest"]:
        raise VerifyError(
            f"vouch.output ({len(output)} bytes, {got}) does not match the signed "
            f"output_len {receipt['output_len']} / output_digest {receipt['output_digest']}"
        )
    out = parse_chat_output(output)
    if out["model"] != request.get("model"):
        raise VerifyError(
            f"the output names model {out['model']!r}, the request {request.get('model')!r}"
        )
    done.append(f"output: ok ({len(output)} bytes, {got})")

    n = out["usage"]["completion_tokens"]
    root = _hex32("receipt.trace_root", receipt["trace_root"])
    if receipt["trace_len"] != n or (root == ZERO_ROOT) != (n == 0):
        raise VerifyError(
            f"the signed trace has {receipt['trace_len']} leaves (root {receipt['trace_root']}), "
            f"but {n} tokens were generated (one leaf per token, §7.3)"
        )
    done.append(f"trace: ok ({n} leaves committed by root {receipt['trace_root']})")

    if model_image is not None:
        _digest("model image", model_image)
        if receipt["image"] != model_image:
            raise VerifyError(f"ran image {receipt['image']}, the model's image is {model_image}")
        done.append(f"model: ok ({out['model']} = image {model_image})")
    else:
        done.append("model: NOT CHECKED (pass the model's image id from GET /v1/models)")
    if operator is not None:
        want = operator.strip().lower()
        _hex32("operator", want)
        if receipt["operator"] != want:
            raise VerifyError(f"signed by {receipt['operator']}, expected {want}")
        done.append("operator: ok (the expected key signed)")
    else:
        done.append("operator: NOT CHECKED (pass the operator key you trust)")
    if network is not None:
        want_net = network_id(network).hex()
        if receipt["network_id"] != want_net:
            raise VerifyError(
                f"receipt is for network {receipt['network_id']}, expected {want_net}"
            )
        done.append(f"network: ok ({want_net})")
    return out, done


def _check_usage(usage: Any, out: dict, where: str) -> None:
    if not isinstance(usage, dict):
        raise VerifyError(f"{where}: usage must be an object")
    for k in USAGE_FIELDS:
        if usage.get(k) != out["usage"][k]:
            raise VerifyError(
                f"{where}: usage.{k} is {usage.get(k)!r}, the signed output says {out['usage'][k]}"
            )


def verify_chat_completion(
    resp: dict,
    request: dict,
    operator: str | None = None,
    model_image: str | None = None,
    network: str | None = None,
    models: dict[str, int] | None = None,
) -> list[str]:
    """Verifies a (non-streamed) `POST /v1/chat/completions` response against the request
    that was sent (SPEC.md §7.4): the receipt, the input, the output, and that the
    content, finish_reason, model and usage received are the signed ones. `operator`: the
    operator key (hex) you trust; `model_image`: the model's image id (`sha256:…`) from
    `GET /v1/models`. Returns one line per check; raises VerifyError on the first failure."""
    if not isinstance(resp, dict):
        raise VerifyError("response: expected a JSON object")
    out, done = verify_vouch(resp.get("vouch"), request, operator, model_image, network, models)
    choices = resp.get("choices")
    if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], dict):
        raise VerifyError("response: expected exactly one choice")
    choice = choices[0]
    msg = choice.get("message")
    if not isinstance(msg, dict) or msg.get("role") != "assistant":
        raise VerifyError("response: choices[0].message must be an assistant message")
    if msg.get("content") != out["content"]:
        raise VerifyError(
            f"the content received differs from the signed content:\n"
            f"  received {msg.get('content')!r}\n  signed   {out['content']!r}"
        )
    if choice.get("finish_reason") != out["finish_reason"]:
        raise VerifyError(
            f"finish_reason {choice.get('finish_reason')!r} differs from the signed {out['finish_reason']!r}"
        )
    if resp.get("model") != out["model"]:
        raise VerifyError(f"model {resp.get('model')!r} differs from the signed {out['model']!r}")
    _check_usage(resp.get("usage"), out, "response")
    done.append("completion: ok (content, finish_reason, model and usage are the signed ones)")
    return done


def parse_sse(body: str | bytes) -> list[dict]:
    """The JSON chunks of an SSE chat stream (`data: {...}` events up to `data: [DONE]`)."""
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    chunks: list[dict] = []
    done = False
    for event in re.split(r"\r?\n\r?\n", body):
        data = "\n".join(
            line[5:].lstrip(" ") if line.startswith("data:") else ""
            for line in event.splitlines()
            if line.startswith("data:")
        )
        if not data:
            continue
        if done:
            raise VerifyError("stream: an event after data: [DONE]")
        if data == "[DONE]":
            done = True
            continue
        chunks.append(loads(data))
    if not done:
        raise VerifyError("stream: it did not end with data: [DONE]")
    return chunks


def verify_stream(
    chunks: list[dict],
    request: dict,
    operator: str | None = None,
    model_image: str | None = None,
    network: str | None = None,
    models: dict[str, int] | None = None,
) -> list[str]:
    """Verifies a streamed chat completion (`stream: true`): `chunks` are the parsed `data:`
    events before `[DONE]`. The content deltas concatenated must be the signed content; the
    chunk carrying `finish_reason` carries the `vouch` object (SPEC.md §7.4)."""
    if not isinstance(chunks, list) or not chunks:
        raise VerifyError("stream: no chunks")
    parts: list[str] = []
    finish: str | None = None
    vouch: Any = None
    usage: Any = None
    ids = set()
    models_seen = set()
    for i, ch in enumerate(chunks):
        if not isinstance(ch, dict) or ch.get("object") != "chat.completion.chunk":
            raise VerifyError(f"stream: chunk {i} is not a chat.completion.chunk")
        ids.add(ch.get("id"))
        models_seen.add(ch.get("model"))
        choices = ch.get("choices")
        if not isinstance(choices, list):
            raise VerifyError(f"stream: chunk {i} has no choices array")
        finished_here = False
        for c in choices:
            if not isinstance(c, dict) or c.get("index", 0) != 0:
                raise VerifyError(f"stream: chunk {i} has a choice other than index 0")
            delta = c.get("delta") or {}
            if not isinstance(delta, dict):
                raise VerifyError(f"stream: chunk {i} has a delta that is not an object")
            piece = delta.get("content")
            if piece is not None:
                if not isinstance(piece, str):
                    raise VerifyError(f"stream: chunk {i} has non-text content")
                if finish is not None and piece:
                    raise VerifyError(f"stream: chunk {i} has content after the finish_reason")
                parts.append(piece)
            if c.get("finish_reason") is not None:
                if finish is not None:
                    raise VerifyError(f"stream: chunk {i} has a second finish_reason")
                finish = c["finish_reason"]
                finished_here = True
        if ch.get("vouch") is not None:
            if vouch is not None:
                raise VerifyError(f"stream: chunk {i} has a second vouch object")
            if not finished_here:
                raise VerifyError(
                    f"stream: chunk {i} has the vouch object but not the finish_reason"
                )
            vouch = ch["vouch"]
        if ch.get("usage") is not None:
            if usage is not None:
                raise VerifyError(f"stream: chunk {i} has a second usage")
            usage = ch["usage"]
    if len(ids) != 1:
        raise VerifyError(f"stream: chunks carry different ids {sorted(map(str, ids))}")
    if finish is None:
        raise VerifyError("stream: no chunk has a finish_reason")
    out, done = verify_vouch(vouch, request, operator, model_image, network, models)
    content = "".join(parts)
    if content != out["content"]:
        raise VerifyError(
            f"the streamed content differs from the signed content:\n"
            f"  received {content!r}\n  signed   {out['content']!r}"
        )
    if finish != out["finish_reason"]:
        raise VerifyError(
            f"finish_reason {finish!r} differs from the signed {out['finish_reason']!r}"
        )
    if models_seen != {out["model"]}:
        raise VerifyError(
            f"stream: model {sorted(map(str, models_seen))} differs from the signed {out['model']!r}"
        )
    opts = request.get("stream_options")
    if isinstance(opts, dict) and opts.get("include_usage") is True and usage is None:
        raise VerifyError("stream: include_usage was asked for but no chunk carries usage")
    if usage is not None:
        _check_usage(usage, out, "stream")
    done.append(
        f"stream: ok ({len(chunks)} chunks; deltas concatenate to the signed content; "
        f"finish_reason{', usage' if usage is not None else ''} and model are the signed ones)"
    )
    return done


# Merkle tree over trace leaves (§7.3): RFC 6962 shape, domain-separated hashes.


def trace_leaf_hash(leaf: bytes) -> bytes:
    """SHA-256(0x00 || "vouch/trace/v1" || leaf)."""
    return hashlib.sha256(b"\x00" + TAG_TRACE + bytes(leaf)).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _root_of_hashes(hashes: list[bytes]) -> bytes:
    if not hashes:
        return ZERO_ROOT
    if len(hashes) == 1:
        return hashes[0]
    k = _split(len(hashes))
    return _node_hash(_root_of_hashes(hashes[:k]), _root_of_hashes(hashes[k:]))


def merkle_root(leaves: list[bytes]) -> bytes:
    """The trace root over `leaves` (32 zero bytes for none)."""
    return _root_of_hashes([trace_leaf_hash(x) for x in leaves])


def merkle_proof(leaves: list[bytes], index: int) -> list[bytes]:
    """The opening of leaf `index`: the sibling hashes from the leaf up to the root."""
    if not 0 <= index < len(leaves):
        raise VerifyError(f"index {index} is not below the number of leaves {len(leaves)}")
    hashes = [trace_leaf_hash(x) for x in leaves]
    path: list[bytes] = []

    def rec(hs: list[bytes], i: int) -> None:
        if len(hs) <= 1:
            return
        k = _split(len(hs))
        if i < k:
            rec(hs[:k], i)
            path.append(_root_of_hashes(hs[k:]))
        else:
            rec(hs[k:], i - k)
            path.append(_root_of_hashes(hs[:k]))

    rec(hashes, index)
    return path


def _leaf_hex(what: str, s: Any) -> bytes:
    if not isinstance(s, str) or not re.fullmatch(r"(?:[0-9a-f]{2})+", s):
        raise VerifyError(f"{what}: expected lowercase hex of 1..={MAX_LEAF_BYTES} bytes")
    b = bytes.fromhex(s)
    if len(b) > MAX_LEAF_BYTES:
        raise VerifyError(f"{what}: {len(b)} bytes is over {MAX_LEAF_BYTES}")
    return b


def verify_merkle_opening(
    root_hex: str, length: int, index: int, leaf_hex: str, proof_hex_list: list[str]
) -> None:
    """Checks that `leaf_hex` is leaf `index` of a trace of `length` leaves whose root is
    `root_hex`, given its opening (sibling hashes from the leaf up). Raises VerifyError."""
    root = _hex32("trace_root", root_hex)
    _uint("trace_len", length, U64_MAX)
    _uint("index", index, U64_MAX)
    if index >= length:
        raise VerifyError(f"index {index} is not below the trace length {length}")
    leaf = _leaf_hex("leaf", leaf_hex)
    if not isinstance(proof_hex_list, list):
        raise VerifyError("proof: expected an array of hashes")
    proof = [_hex32(f"proof[{j}]", h) for j, h in enumerate(proof_hex_list)]
    # Walk down the splits the tree was built with, recording the side taken at each level.
    n, i = length, index
    sides: list[bool] = []  # True: our subtree is the right child
    while n > 1:
        k = _split(n)
        if i < k:
            sides.append(False)
            n = k
        else:
            sides.append(True)
            i -= k
            n -= k
    if len(sides) != len(proof):
        raise VerifyError(
            f"the opening has {len(proof)} hashes; leaf {index} of {length} needs {len(sides)}"
        )
    acc = trace_leaf_hash(leaf)
    for sibling, on_right in zip(proof, reversed(sides), strict=True):
        acc = _node_hash(sibling, acc) if on_right else _node_hash(acc, sibling)
    if acc != root:
        raise VerifyError("the opening does not lead to the signed trace root")


def decode_trace_leaf(leaf: bytes) -> dict:
    """The fields of a vouch-tiny-1 trace leaf (§7.3): position u32 BE, token u32 BE,
    draw u64 BE, logit i32 BE."""
    if len(leaf) != TRACE_LEAF_LEN:
        raise VerifyError(f"trace leaf: expected {TRACE_LEAF_LEN} bytes, got {len(leaf)}")
    return {
        "position": int.from_bytes(leaf[0:4], "big"),
        "token": int.from_bytes(leaf[4:8], "big"),
        "draw": int.from_bytes(leaf[8:16], "big"),
        "logit": int.from_bytes(leaf[16:20], "big", signed=True),
    }


def verify_trace_opening(opening: dict, receipt: dict) -> dict:
    """Checks a `GET /v1/jobs/{id}/trace/{index}` answer against a receipt (already
    verified, §4.2): same job, the signed root and length, and the opening. Returns the
    decoded leaf when it is a 20-byte model leaf, else {"leaf": bytes}."""
    if not isinstance(opening, dict):
        raise VerifyError("trace opening: expected a JSON object")
    for k in ("job_id", "index", "leaf", "proof"):
        if k not in opening:
            raise VerifyError(f"trace opening: missing field {k}")
    if opening["job_id"] != receipt["job_id"]:
        raise VerifyError("trace opening: it is about another job")
    # The root and length that count are the signed ones, not what the opening restates.
    for k in ("trace_root", "trace_len"):
        if k in opening and opening[k] != receipt[k]:
            raise VerifyError(
                f"trace opening: {k} {opening[k]!r} differs from the signed {receipt[k]!r}"
            )
    verify_merkle_opening(
        receipt["trace_root"],
        receipt["trace_len"],
        opening["index"],
        opening["leaf"],
        opening["proof"],
    )
    leaf = bytes.fromhex(opening["leaf"])
    return decode_trace_leaf(leaf) if len(leaf) == TRACE_LEAF_LEN else {"leaf": leaf}


def verify_trace(trace: dict, receipt: dict, tokens: list[int] | None = None) -> list[dict]:
    """Checks a `GET /v1/jobs/{id}/trace` answer against a receipt (already verified): the
    leaves hash to the signed root and are as many as signed. With `tokens` (the model
    output's), each 20-byte leaf must be at its position and name that token. Returns the
    decoded leaves."""
    if not isinstance(trace, dict) or not isinstance(trace.get("leaves"), list):
        raise VerifyError("trace: expected an object with a leaves array")
    if trace.get("job_id") != receipt["job_id"]:
        raise VerifyError("trace: it is about another job")
    leaves = [_leaf_hex(f"leaves[{i}]", x) for i, x in enumerate(trace["leaves"])]
    if len(leaves) != receipt["trace_len"]:
        raise VerifyError(f"trace: {len(leaves)} leaves, the receipt signs {receipt['trace_len']}")
    if merkle_root(leaves).hex() != receipt["trace_root"]:
        raise VerifyError("trace: the leaves do not hash to the signed trace root")
    decoded = [decode_trace_leaf(x) for x in leaves]
    if tokens is not None:
        if len(tokens) != len(decoded):
            raise VerifyError(f"trace: {len(decoded)} leaves for {len(tokens)} tokens")
        for i, (d, t) in enumerate(zip(decoded, tokens, strict=True)):
            if d["position"] != i or d["token"] != t:
                raise VerifyError(
                    f"trace: leaf {i} is position {d['position']} token {d['token']}, expected {i} / {t}"
                )
    return decoded


# --- SPEC.md §8: test vectors ------------------------------------------------------------


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


def _cmd_chat(args: argparse.Namespace) -> int:
    with open(args.response, encoding="utf-8") as f:
        resp = json.load(f)
    with open(args.request, encoding="utf-8") as f:
        request = json.load(f)
    try:
        lines = verify_chat_completion(resp, request, operator=args.operator, model_image=args.model_image)
    except (VerifyError, ChatRequestError) as e:
        print(f"FAILED: {e}")
        return 1
    for line in lines:
        print(line)
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
    c = sub.add_parser("chat", help="verify a saved chat completion against the request sent")
    c.add_argument("--response", required=True, help="the saved POST /v1/chat/completions response")
    c.add_argument("--request", required=True, help="the request body that was sent")
    c.add_argument("--operator", help="the operator key you expect (64 hex)")
    c.add_argument("--model-image", help="the model's image id (sha256:…) from GET /v1/models")
    c.set_defaults(func=_cmd_chat)
    args = p.parse_args(argv)
    if args.cmd == "job" and args.output_file and not args.file:
        p.error("--output-file goes with --file (with --url the output is fetched)")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
