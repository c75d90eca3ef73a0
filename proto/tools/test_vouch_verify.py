"""Tests of the independent verifier (run: python3 -m pytest -q proto/tools)."""

from __future__ import annotations

import copy
import hashlib
import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vouch_verify as vv  # noqa: E402

HERE = Path(__file__).resolve().parent
VECTORS_PATH = HERE.parent / "testdata" / "vectors.json"
VECTORS = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
TOOL = HERE / "vouch_verify.py"


def receipt_view(i: int = 0) -> dict:
    return copy.deepcopy(VECTORS["receipts"][i]["receipt"])


def job_view(i: int = 0) -> dict:
    """A `GET /v1/jobs/{id}` answer built from the vectors (job i, receipt i)."""
    j = VECTORS["jobs"][i]
    r = receipt_view(i)
    return {
        "job_id": j["job_id"],
        "status": "succeeded",
        "spec": copy.deepcopy(j["spec"]),
        "exit_code": r["exit_code"],
        "output_len": r["output_len"],
        "attempts": 1,
        "created_at_ms": 1795000000000,
        "updated_at_ms": 1795000000000,
        "receipt": r,
    }


OUTPUT = b"output"  # what the vectors' output_digest is the SHA-256 of


def resign(view: dict, seed: bytes, **changes) -> dict:
    """A consistent, correctly signed view with `changes` applied (for negative tests that
    must fail for a reason other than a bad signature)."""
    fields = {n: view[n] for n, _, _ in vv.RECEIPT_FIELDS}
    fields.update(changes)
    sk = Ed25519PrivateKey.from_private_bytes(seed)
    fields["operator"] = sk.public_key().public_bytes_raw().hex()
    enc = vv.encode_receipt(fields)
    root = vv.signing_root(enc)
    sig = sk.sign(root)
    return dict(fields, signing_root=root.hex(), signature=sig.hex(), encoded=(enc + sig).hex())


# --- vectors -----------------------------------------------------------------------------


def test_all_vectors_pass():
    lines: list[str] = []
    passed, failed = vv.check_vectors(VECTORS_PATH, log=lines.append)
    assert failed == 0, "\n".join(lines)
    expected = 1 + len(VECTORS["jobs"]) + len(VECTORS["receipts"]) + len(
        VECTORS["invalid_receipts"]
    )
    assert passed == expected


def test_cli_vectors():
    proc = subprocess.run(
        [sys.executable, str(TOOL), "vectors", str(VECTORS_PATH)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1].endswith("passed, 0 failed")


def test_cli_vectors_reports_a_broken_vector(tmp_path):
    doc = copy.deepcopy(VECTORS)
    doc["jobs"][0]["job_id"] = "00" * 32
    p = tmp_path / "v.json"
    p.write_text(json.dumps(doc), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(TOOL), "vectors", str(p)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert "FAIL job[0]" in proc.stdout
    total = 1 + len(doc["jobs"]) + len(doc["receipts"]) + len(doc["invalid_receipts"])
    assert proc.stdout.strip().splitlines()[-1] == f"{total - 1} passed, 1 failed"


@pytest.mark.parametrize("i", range(len(VECTORS["jobs"])))
def test_job_vectors_canonical_and_id(i):
    v = VECTORS["jobs"][i]
    assert vv.jcs(v["spec"]) == v["canonical"].encode("utf-8")
    assert vv.job_id(v["spec"]) == v["job_id"]
    # The canonical form is the same whatever order the keys came in.
    shuffled = dict(reversed(list(v["spec"].items())))
    assert vv.job_id(shuffled) == v["job_id"]


@pytest.mark.parametrize("i", range(len(VECTORS["receipts"])))
def test_receipt_vectors(i):
    v = VECTORS["receipts"][i]
    vv.verify_receipt_json(v["receipt"])
    enc = vv.encode_receipt(v["receipt"])
    assert enc.hex() == v["encoded_receipt"]
    assert len(enc) == 260
    assert vv.signing_root(enc).hex() == v["signing_root"]
    assert vv.decode_receipt(enc) == {n: v["receipt"][n] for n, _, _ in vv.RECEIPT_FIELDS}
    assert vv.network_id(v["network_name"]).hex() == v["receipt"]["network_id"]


def test_receipt_layout_offsets():
    expected = {
        "network_id": (0, 32),
        "operator": (32, 32),
        "sequence": (64, 8),
        "job_id": (72, 32),
        "image": (104, 32),
        "input_digest": (136, 32),
        "output_digest": (168, 32),
        "output_len": (200, 8),
        "exit_code": (208, 4),
        "trace_root": (212, 32),
        "trace_len": (244, 8),
        "issued_at_ms": (252, 8),
    }
    assert vv.RECEIPT_OFFSETS == expected
    r = VECTORS["receipts"][1]["receipt"]
    enc = bytes.fromhex(VECTORS["receipts"][1]["encoded_receipt"])
    assert enc[208:212] == bytes.fromhex("fffffffe")  # exit_code -2, two's complement
    assert r["exit_code"] == -2
    assert enc[244:252] == (256).to_bytes(8, "big")


@pytest.mark.parametrize("i", range(len(VECTORS["invalid_receipts"])))
def test_invalid_vectors_rejected(i):
    v = VECTORS["invalid_receipts"][i]
    with pytest.raises(vv.VerifyError):
        vv.verify_signed_receipt(bytes.fromhex(v["signed_receipt"]))


# --- tampering ---------------------------------------------------------------------------

TAMPER_OFFSETS = [0, 31, 32, 63, 64, 71, 72, 103, 104, 136, 168, 199, 200, 208, 211, 212,
                  243, 244, 252, 259, 260, 291, 292, 323]


@pytest.mark.parametrize("offset", TAMPER_OFFSETS)
def test_flipped_byte_in_encoded_is_rejected(offset):
    r = receipt_view()
    b = bytearray(bytes.fromhex(r["encoded"]))
    b[offset] ^= 0x01
    r["encoded"] = b.hex()
    with pytest.raises(vv.VerifyError):
        vv.verify_receipt_json(r)


@pytest.mark.parametrize("offset", TAMPER_OFFSETS)
def test_flipped_byte_with_consistent_fields_fails_the_signature(offset):
    """A relay that rewrites the encoding AND every restated field still cannot forge."""
    r = receipt_view()
    b = bytearray(bytes.fromhex(r["encoded"]))
    b[offset] ^= 0x01
    receipt, sig = bytes(b[:260]), bytes(b[260:])
    forged = dict(vv.decode_receipt(receipt))
    forged.update(
        signing_root=vv.signing_root(receipt).hex(), signature=sig.hex(), encoded=b.hex()
    )
    with pytest.raises(vv.VerifyError):
        vv.verify_receipt_json(forged)


def test_exit_code_changed_in_json_view_only():
    r = receipt_view()
    r["exit_code"] = 1
    with pytest.raises(vv.VerifyError, match="exit_code"):
        vv.verify_receipt_json(r)


def test_exit_code_as_bool_or_float_is_refused():
    for bad in (False, 0.0):
        r = receipt_view()
        r["exit_code"] = bad
        with pytest.raises(vv.VerifyError):
            vv.verify_receipt_json(r)


def test_operator_changed():
    other = Ed25519PrivateKey.from_private_bytes(bytes([8] * 32))
    other_hex = other.public_key().public_bytes_raw().hex()
    r = receipt_view()
    r["operator"] = other_hex
    with pytest.raises(vv.VerifyError, match="operator"):
        vv.verify_receipt_json(r)
    # Changed in the encoding too: now the signature is checked under the wrong key.
    b = bytearray(bytes.fromhex(r["encoded"]))
    b[32:64] = bytes.fromhex(other_hex)
    r["encoded"] = b.hex()
    r["signing_root"] = vv.signing_root(bytes(b[:260])).hex()
    with pytest.raises(vv.VerifyError, match="signature does not verify"):
        vv.verify_receipt_json(r)


@pytest.mark.parametrize("field", ["signing_root", "signature"])
def test_restated_root_and_signature_must_match(field):
    r = receipt_view()
    r[field] = r[field][:-1] + ("0" if r[field][-1] != "0" else "1")
    with pytest.raises(vv.VerifyError):
        vv.verify_receipt_json(r)


def test_wrong_lengths_and_forms_are_rejected():
    base = receipt_view()
    for enc in (base["encoded"][:-2], base["encoded"] + "00", base["encoded"] + "0",
                base["encoded"].upper()):
        r = dict(base, encoded=enc)
        with pytest.raises(vv.VerifyError):
            vv.verify_receipt_json(r)
    r = dict(base, job_id=base["job_id"].upper())
    with pytest.raises(vv.VerifyError, match="lowercase"):
        vv.verify_receipt_json(r)
    r = dict(base, image=base["image"][len("sha256:"):])
    with pytest.raises(vv.VerifyError, match="sha256:"):
        vv.verify_receipt_json(r)
    r = dict(base, extra=1)
    with pytest.raises(vv.VerifyError, match="unknown field"):
        vv.verify_receipt_json(r)
    r = dict(base)
    del r["trace_len"]
    with pytest.raises(vv.VerifyError, match="missing field"):
        vv.verify_receipt_json(r)
    with pytest.raises(vv.VerifyError):
        vv.decode_receipt(bytes(261))
    with pytest.raises(vv.VerifyError):
        vv.signing_root(bytes(259))


def test_resigned_receipt_verifies():
    # The helper used below produces receipts that do verify, so negative tests built
    # with it fail for the reason they name.
    vv.verify_receipt_json(resign(receipt_view(), bytes([9] * 32)))


# --- strict ed25519 ----------------------------------------------------------------------

_IDENTITY = (1).to_bytes(32, "little")
_BASE = (4 * pow(5, vv._P - 2, vv._P) % vv._P).to_bytes(32, "little")


def test_small_order_points():
    small = [
        _IDENTITY,
        (vv._P - 1).to_bytes(32, "little"),  # (0, -1)
        (vv._P + 1).to_bytes(32, "little"),  # identity, non-canonical y
        bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
        bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    ]
    for p in small:
        assert vv.is_small_order(p), p.hex()
    assert not vv.is_small_order(_BASE)
    for v in VECTORS["receipts"]:
        assert not vv.is_small_order(bytes.fromhex(v["receipt"]["operator"]))


def test_identity_key_forgery_is_refused():
    # With A = identity, (R = B, S = 1) satisfies the RFC 8032 equation for ANY message.
    # Plain RFC 8032 verifiers (OpenSSL among them) may accept it; strict ones must not.
    sig = _BASE + (1).to_bytes(32, "little")
    with pytest.raises(vv.VerifyError, match="small order"):
        vv.verify_signature(_IDENTITY, b"any root at all", sig)


def test_small_order_r_is_refused():
    # A signer that picks r = 0 makes R the identity; the equation holds (S = k*a), but
    # verify_strict refuses it, and so must we.
    seed = bytes([7] * 32)
    sk = Ed25519PrivateKey.from_private_bytes(seed)
    pub = sk.public_key().public_bytes_raw()
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    msg = bytes.fromhex(VECTORS["receipts"][0]["signing_root"])
    k = int.from_bytes(hashlib.sha512(_IDENTITY + pub + msg).digest(), "little") % vv._L
    sig = _IDENTITY + (k * a % vv._L).to_bytes(32, "little")
    with pytest.raises(vv.VerifyError, match="small order"):
        vv.verify_signature(pub, msg, sig)


def test_non_canonical_s_is_refused():
    v = VECTORS["receipts"][0]
    sig = bytes.fromhex(v["signature"])
    s = int.from_bytes(sig[32:], "little") + vv._L
    malleated = sig[:32] + s.to_bytes(32, "little")
    with pytest.raises(vv.VerifyError):
        vv.verify_signature(
            bytes.fromhex(v["receipt"]["operator"]), bytes.fromhex(v["signing_root"]), malleated
        )
    vv.verify_signature(
        bytes.fromhex(v["receipt"]["operator"]), bytes.fromhex(v["signing_root"]), sig
    )
    # The plain library check agrees on the good signature.
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(v["receipt"]["operator"])).verify(
        sig, bytes.fromhex(v["signing_root"])
    )


# --- JCS ---------------------------------------------------------------------------------


def test_jcs_escapes():
    assert vv.jcs("\u0000\u001f\"\\\n/é€😀\u007f") == (
        '"\\u0000\\u001f\\"\\\\\\n/é€😀\u007f"'.encode("utf-8")
    )
    short = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}
    for c in range(0x20):
        want = short.get(c, f"\\u{c:04x}")
        assert vv.jcs(chr(c)) == f'"{want}"'.encode(), hex(c)
    # Not escaped: '/', DEL, C1 controls, U+2028/2029, non-ASCII, astral characters.
    for s in ("/", "\u007f", "\u0080", "\u009f", "\u2028", "\u2029", "ö", "😀"):
        assert vv.jcs(s) == b'"' + s.encode("utf-8") + b'"'


def test_jcs_matches_the_second_vector_string():
    arg = VECTORS["jobs"][1]["spec"]["command"][2]
    assert arg == 'tab\there "quoted" \\ é€😀\u0001'
    assert vv.jcs(arg).decode("utf-8") in VECTORS["jobs"][1]["canonical"]
    assert vv.jcs(arg) == '"tab\\there \\"quoted\\" \\\\ é€😀\\u0001"'.encode("utf-8")


def test_jcs_sorts_keys_by_utf16_code_units():
    assert vv.jcs({"\uff61": 1, "\U0001f600": 2}) == '{"😀":2,"｡":1}'.encode("utf-8")
    # RFC 8785 §3.2.3's example.
    doc = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    keys = list(json.loads(vv.jcs(doc)))
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert vv.jcs({"b": 1, "a": [True, None, "x"], "": {}}) == b'{"":{},"a":[true,null,"x"],"b":1}'


def test_jcs_numbers():
    assert vv.jcs(0) == b"0"
    assert vv.jcs(2**53 - 1) == b"9007199254740991"
    for bad in (2**53, -1, 1.5, 1.0, float("inf")):
        with pytest.raises(vv.VerifyError):
            vv.jcs(bad)
    with pytest.raises(vv.VerifyError):
        vv.jcs({"a": [1, 2.0]})
    assert vv.jcs(True) == b"true"


def test_jcs_refuses_lone_surrogates_and_odd_types():
    for bad in ("\ud800", {"\udc00": 1}, b"bytes", {1: 2}, {1, 2}):
        with pytest.raises(vv.VerifyError):
            vv.jcs(bad)


def test_strict_json_parsing():
    with pytest.raises(vv.VerifyError, match="duplicate"):
        vv.loads('{"a":1,"a":2}')
    with pytest.raises(vv.VerifyError):
        vv.loads('{"a":NaN}')
    assert vv.loads('{"a":[1,"x"]}') == {"a": [1, "x"]}


# --- job spec validation -----------------------------------------------------------------


def _spec(**changes):
    s = copy.deepcopy(VECTORS["jobs"][1]["spec"])
    s.update(changes)
    return s


@pytest.mark.parametrize(
    "name,spec",
    [
        ("unsorted env", _spec(env=["B=1", "A=1"])),
        ("duplicate env key", _spec(env=["A=1", "A=2"])),
        ("env without =", _spec(env=["A"])),
        ("bad env key", _spec(env=["1A=1"])),
        ("non-ASCII env key", _spec(env=["É=1"])),
        ("NUL in env", _spec(env=["A=\u0000"])),
        ("NUL in arg", _spec(command=["a\u0000b"])),
        ("long arg", _spec(command=["x" * 4097])),
        ("too many args", _spec(command=["x"] * 257)),
        ("zero timeout", _spec(limits=dict(_spec()["limits"], timeout_ms=0))),
        ("huge memory", _spec(limits=dict(_spec()["limits"], memory_bytes=2**53))),
        ("bool limit", _spec(limits=dict(_spec()["limits"], pids=True))),
        ("float limit", _spec(limits=dict(_spec()["limits"], pids=64.0))),
        ("missing limit", _spec(limits={k: 1 for k in vv.LIMIT_FIELDS if k != "pids"})),
        ("extra limit", _spec(limits=dict(_spec()["limits"], swap=1))),
        ("zero replicas", _spec(replicas=0)),
        ("too many replicas", _spec(replicas=17)),
        ("bool replicas", _spec(replicas=True)),
        ("long nonce", _spec(nonce="x" * 129)),
        ("long nonce in bytes", _spec(nonce="é" * 65)),
        ("amount with leading zero", _spec(value_at_risk="01")),
        ("amount as number", _spec(value_at_risk=12)),
        ("amount negative", _spec(value_at_risk="-1")),
        ("amount over u128", _spec(value_at_risk=str(2**128))),
        ("determinism", _spec(determinism="maybe")),
        ("uppercase digest", _spec(image=_spec()["image"].upper().replace("SHA256", "sha256"))),
        ("digest without prefix", _spec(input_digest=_spec()["input_digest"][7:])),
        ("unknown field", _spec(extra=1)),
    ],
)
def test_invalid_specs_have_no_job_id(name, spec):
    with pytest.raises(vv.VerifyError):
        vv.job_id(spec)


def test_missing_spec_field_and_size_limit():
    s = _spec()
    del s["nonce"]
    with pytest.raises(vv.VerifyError, match="missing"):
        vv.job_id(s)
    big = _spec(command=["x" * 4000] * 17)  # valid field by field, canonical form > 64 KiB
    vv.validate_spec(big)
    with pytest.raises(vv.VerifyError, match="65536"):
        vv.job_id(big)


def test_edge_values_are_valid():
    ok = _spec(
        env=["A=", "B=x=y", "_=1"],
        nonce="x" * 128,
        replicas=16,
        value_at_risk=str(2**128 - 1),
        limits={k: 2**53 - 1 for k in vv.LIMIT_FIELDS},
        command=["x" * 4096],
    )
    assert len(vv.job_id(ok)) == 64


def test_network_id():
    assert vv.network_id("vouch-testnet").hex() == (
        "36ab5abc8ba32c2cbe0000f1bd4b16b96b865e1f6e6040f815eedbc6bfbe278e"
    )
    h = "ab" * 32
    assert vv.network_id(h) == bytes.fromhex(h)
    # Uppercase hex is not an id, so it is hashed as a name (as the node does).
    assert vv.network_id(h.upper()) == hashlib.sha256(b"vouch/network/v1" + h.upper().encode()).digest()


# --- verify_job --------------------------------------------------------------------------


def test_verify_job_accepts_a_good_job():
    op = VECTORS["receipts"][0]["receipt"]["operator"]
    lines = vv.verify_job(job_view(), OUTPUT, op, network="vouch-testnet")
    text = "\n".join(lines)
    for word in ("job id: ok", "receipt: ok", "binding: ok", "operator: ok", "output: ok",
                 "network: ok"):
        assert word in text
    assert "NOT CHECKED" in "\n".join(vv.verify_job(job_view(), None, None))


def test_verify_job_failures():
    op = VECTORS["receipts"][0]["receipt"]["operator"]
    other_op = VECTORS["receipts"][1]["receipt"]["operator"]
    with pytest.raises(vv.VerifyError, match="output"):
        vv.verify_job(job_view(), b"outpuT", op)
    with pytest.raises(vv.VerifyError, match="output"):
        vv.verify_job(job_view(), OUTPUT + b"\n", op)
    with pytest.raises(vv.VerifyError, match="expected"):
        vv.verify_job(job_view(), OUTPUT, other_op)
    with pytest.raises(vv.VerifyError, match="network"):
        vv.verify_job(job_view(), OUTPUT, op, network="vouch-devnet")
    j = job_view()
    j["spec"]["nonce"] = "other"
    with pytest.raises(vv.VerifyError, match="job id mismatch"):
        vv.verify_job(j, OUTPUT, op)
    # The job id is consistent with a changed spec, but the receipt is about the old one.
    j["job_id"] = vv.job_id(j["spec"])
    with pytest.raises(vv.VerifyError, match="not about this spec"):
        vv.verify_job(j, OUTPUT, op)
    j = job_view()
    j["exit_code"] = 3
    with pytest.raises(vv.VerifyError, match="exit_code"):
        vv.verify_job(j, OUTPUT, op)
    j = job_view()
    j["receipt"]["output_len"] = 7
    with pytest.raises(vv.VerifyError, match="output_len"):
        vv.verify_job(j, OUTPUT, op)
    j = job_view()
    j.update(status="failed", reason="timeout: the workload ran longer than 10 ms")
    del j["receipt"]
    with pytest.raises(vv.VerifyError, match="no receipt.*timeout"):
        vv.verify_job(j, None, None)


def test_verify_job_catches_a_correctly_signed_receipt_with_the_wrong_image():
    # Properly signed, but it restates another image than the spec the job id commits to.
    j = job_view()
    seed = bytes([7] * 32)
    j["receipt"] = resign(j["receipt"], seed, image="sha256:" + "11" * 32)
    vv.verify_receipt_json(j["receipt"])
    with pytest.raises(vv.VerifyError, match="image"):
        vv.verify_job(j, OUTPUT, None)


def test_cli_job_from_files(tmp_path):
    jf = tmp_path / "job.json"
    jf.write_text(json.dumps(job_view()), encoding="utf-8")
    out = tmp_path / "out.bin"
    out.write_bytes(OUTPUT)
    op = VECTORS["receipts"][0]["receipt"]["operator"]
    ok = subprocess.run(
        [sys.executable, str(TOOL), "job", "--file", str(jf), "--output-file", str(out),
         "--operator", op],
        capture_output=True, text=True,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "output: ok" in ok.stdout and ok.stdout.strip().endswith("verified")
    out.write_bytes(b"forged")
    bad = subprocess.run(
        [sys.executable, str(TOOL), "job", "--file", str(jf), "--output-file", str(out)],
        capture_output=True, text=True,
    )
    assert bad.returncode == 1
    assert "FAILED" in bad.stderr


class _FakeNode(http.server.BaseHTTPRequestHandler):
    job: dict = {}
    output: bytes = b""
    api_key = "k1"
    seen_auth: list[str | None] = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.seen_auth.append(self.headers.get("Authorization"))
        if self.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._send(401, json.dumps(
                {"error": {"code": "missing_api_key", "message": "need a key"}}).encode())
        jid = self.job["job_id"]
        path = self.path.split("?")[0]
        if path == f"/v1/jobs/{jid}":
            return self._send(200, json.dumps(self.job).encode(), "application/json")
        if path == f"/v1/jobs/{jid}/output":
            return self._send(200, self.output, "application/octet-stream")
        return self._send(404, json.dumps(
            {"error": {"code": "job_not_found", "message": "no job"}}).encode())

    def _send(self, code, body, ctype="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def fake_node():
    _FakeNode.job = job_view()
    _FakeNode.output = OUTPUT
    _FakeNode.seen_auth = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeNode)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_cli_job_over_http(fake_node, capsys):
    jid = _FakeNode.job["job_id"]
    op = VECTORS["receipts"][0]["receipt"]["operator"]
    rc = vv.main(["job", "--url", fake_node, "--job-id", jid, "--api-key", "k1",
                  "--operator", op, "--timeout", "10"])
    out = capsys.readouterr()
    assert rc == 0, out.out + out.err
    assert "output: ok (6 bytes" in out.out
    assert _FakeNode.seen_auth == ["Bearer k1", "Bearer k1"]

    rc = vv.main(["job", "--url", fake_node, "--job-id", jid, "--timeout", "10"])
    assert rc == 1
    assert "401" in capsys.readouterr().err

    _FakeNode.output = b"tampered"
    rc = vv.main(["job", "--url", fake_node, "--job-id", jid, "--api-key", "k1",
                  "--timeout", "10"])
    assert rc == 1
    assert "does not match the signed" in capsys.readouterr().err

    rc = vv.main(["job", "--url", fake_node, "--job-id", "00" * 32, "--api-key", "k1",
                  "--timeout", "10"])
    assert rc == 1
    assert "job_not_found" in capsys.readouterr().err


# --- SPEC.md §7: inference ---------------------------------------------------------------

SPEC_EXAMPLE_REQUEST = {
    "model": "vouch-tiny-1",
    "messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": 'Say "hi"\n'}]},
    ],
    "temperature": 0.8,
    "top_p": 0.9,
    "seed": 7,
    "max_tokens": 64,
    "stop": "\n\n",
    "stream": True,
    "stream_options": {"include_usage": True},
    "user": "alice",
}
# Written by hand from SPEC.md §7.1 (raw string: \" and \n are the JSON escapes).
SPEC_EXAMPLE_INPUT = (
    r'{"max_tokens":64,"messages":[{"content":"Be brief.","role":"system"},'
    r'{"content":"Say \"hi\"\n","role":"user"}],"model":"vouch-tiny-1","seed":7,'
    r'"stop":["\n\n"],"temperature_milli":800,"top_p_milli":900}'
)


def test_normalize_spec_example():
    got = vv.normalize_chat_request(SPEC_EXAMPLE_REQUEST)
    assert got == SPEC_EXAMPLE_INPUT.encode("utf-8")
    assert len(got) == 201
    assert (
        hashlib.sha256(got).hexdigest()
        == "636b390549d61b1cc82b07ae327eae400b63877238ea06f9ea56c3c7ede864b4"
    )
    # The stream fields do not enter the input.
    plain = {k: v for k, v in SPEC_EXAMPLE_REQUEST.items() if k not in ("stream", "stream_options")}
    assert vv.normalize_chat_request(plain) == got


def test_normalize_defaults():
    got = vv.normalize_chat_request(
        {"model": "vouch-tiny-1", "messages": [{"role": "user", "content": "Hello"}]}
    )
    assert got == (
        b'{"max_tokens":256,"messages":[{"content":"Hello","role":"user"}],'
        b'"model":"vouch-tiny-1","seed":0,"stop":[],"temperature_milli":1000,"top_p_milli":1000}'
    )
    # A model limit below 256 lowers the default.
    small = vv.normalize_chat_request(
        {"model": "m", "messages": [{"role": "user", "content": "x"}]}, {"m": 100}
    )
    assert small.startswith(b'{"max_tokens":100,')


def _norm(**changes) -> dict:
    req = {"model": "vouch-tiny-1", "messages": [{"role": "user", "content": "Hi"}]}
    req.update(changes)
    return json.loads(vv.normalize_chat_request(req, {"vouch-tiny-1": 4096}))


@pytest.mark.parametrize(
    "changes,field,want",
    [
        ({"temperature": 0}, "temperature_milli", 0),
        ({"temperature": 2}, "temperature_milli", 2000),
        ({"temperature": 0.0625}, "temperature_milli", 63),  # 62.5: half away from zero
        ({"temperature": 0.5625}, "temperature_milli", 563),  # Python's round() gives 562
        ({"temperature": 0.0004}, "temperature_milli", 0),
        ({"top_p": 0.0004}, "top_p_milli", 1),  # rounds to 0, then max(1, …)
        ({"top_p": 0.9}, "top_p_milli", 900),
        ({"seed": 2**53 - 1}, "seed", 2**53 - 1),
        ({"max_completion_tokens": 3, "max_tokens": 9}, "max_tokens", 3),
        ({"max_completion_tokens": None, "max_tokens": 9}, "max_tokens", 9),
        ({"stop": ["b", "a", "b"]}, "stop", ["b", "a", "b"]),
        ({"stop": None}, "stop", []),
    ],
)
def test_normalize_values(changes, field, want):
    assert _norm(**changes)[field] == want


def test_normalize_messages():
    msgs = [
        {"role": "system", "content": "s"},
        {
            "role": "developer",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b", "x": 1}],
        },
        {"role": "assistant"},
        {"role": "assistant", "content": None, "name": "bot"},
        {"role": "user", "content": []},
        {"role": "user", "content": "é€😀\u2028\u0001/"},
    ]
    got = _norm(messages=msgs)["messages"]
    assert got == [
        {"content": "s", "role": "system"},
        {"content": "ab", "role": "system"},
        {"content": "", "role": "assistant"},
        {"content": "", "role": "assistant"},
        {"content": "", "role": "user"},
        {"content": "é€😀\u2028\u0001/", "role": "user"},
    ]
    raw = vv.normalize_chat_request(
        {"model": "m", "messages": [{"role": "user", "content": 'é\u0001"/'}]}
    )
    assert b'"content":"\xc3\xa9\\u0001\\"/"' in raw


@pytest.mark.parametrize(
    "changes,param",
    [
        ({"foo": 1}, "foo"),
        ({"zzz": 1, "aaa": 2}, "aaa"),
        ({"model": 3}, "model"),
        ({"messages": []}, "messages"),
        ({"messages": "x"}, "messages"),
        ({"messages": [1]}, "messages[0]"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content",
        ),
        ({"messages": [{"role": "user", "content": "x" * 32769}]}, "messages"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 4097}, "max_tokens"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"max_tokens": 7.0}, "max_tokens"),
        ({"temperature": True}, "temperature"),
        ({"temperature": "1"}, "temperature"),
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**53}, "seed"),
        ({"seed": 7.0}, "seed"),
        ({"n": 2}, "n"),
        ({"n": "1"}, "n"),
        ({"presence_penalty": 0.1}, "presence_penalty"),
        ({"frequency_penalty": -3}, "frequency_penalty"),
        ({"logprobs": True}, "logprobs"),
        ({"stop": ""}, "stop"),
        ({"stop": ["a"] * 5}, "stop"),
        ({"stop": ["x" * 65]}, "stop"),
        ({"stop": ["é" * 33]}, "stop"),
        ({"stop": [1]}, "stop"),
        ({"stream": "yes"}, "stream"),
        ({"user": 3}, "user"),
    ],
)
def test_normalize_refuses(changes, param):
    with pytest.raises(vv.ChatRequestError) as e:
        _norm(**changes)
    assert e.value.param == param
    assert e.value.code == "invalid_value"


def test_normalize_unknown_model():
    with pytest.raises(vv.ChatRequestError) as e:
        _norm(model="nope")
    assert (e.value.param, e.value.code) == ("model", "model_not_found")
    # Without a model list any name is taken.
    req = {"model": "nope", "messages": [{"role": "user", "content": "x"}]}
    assert b'"model":"nope"' in vv.normalize_chat_request(req)


def test_normalize_accepts_ignored_fields():
    base = _norm()
    assert (
        _norm(
            n=1,
            stream=False,
            user="u",
            metadata={"a": "b"},
            store=True,
            logprobs=False,
            presence_penalty=0,
            stream_options={"include_usage": True},
        )
        == base
    )


# Merkle tree (§7.3)


def _leaf(p: int, t: int, d: int, logit: int) -> bytes:
    return (
        p.to_bytes(4, "big")
        + t.to_bytes(4, "big")
        + d.to_bytes(8, "big")
        + logit.to_bytes(4, "big", signed=True)
    )


SPEC_LEAVES = [
    _leaf(0, 54, 0x1A2B3C4D5E6F7081, 1283),
    _leaf(1, 74, 0x0123456789ABCDEF, -77),
    _leaf(2, 71, 0xFEDCBA9876543210, 906),
]


def test_merkle_spec_worked_example():
    assert [x.hex() for x in SPEC_LEAVES] == [
        "00000000000000361a2b3c4d5e6f708100000503",
        "000000010000004a0123456789abcdefffffffb3",
        "0000000200000047fedcba98765432100000038a",
    ]
    h = [vv.trace_leaf_hash(x) for x in SPEC_LEAVES]
    assert h[0].hex() == "6a3f6df0738be7d8fb07b2446a94ceb0b530f4a3de6e7eddf345cd867495594e"
    assert h[1].hex() == "a6c93a938aa75174d6878fbc3baf2dc4797c0aa3ad8c15362ccae00d4d02cba3"
    assert h[2].hex() == "a17b4509db79c02c7023b5141da0000d5e6c824fcc368639fe7314a80d1e60c4"
    # Independently of the module: SHA-256(0x00 || tag || leaf), SHA-256(0x01 || l || r).
    assert h[0] == hashlib.sha256(b"\x00vouch/trace/v1" + SPEC_LEAVES[0]).digest()
    n01 = hashlib.sha256(b"\x01" + h[0] + h[1]).digest()
    assert n01.hex() == "f543f0a51343a48b9d924ed804753c94f770e75e4934ee1f4d3cd7e7a45737d9"
    root = hashlib.sha256(b"\x01" + n01 + h[2]).digest()
    assert root.hex() == "e493c0676a2139a776f371f5af4d2b3798f97c2e4056d9f28475b57205e5b9a3"
    assert vv.merkle_root(SPEC_LEAVES) == root
    assert vv.merkle_proof(SPEC_LEAVES, 0) == [h[1], h[2]]
    assert vv.merkle_proof(SPEC_LEAVES, 1) == [h[0], h[2]]
    assert vv.merkle_proof(SPEC_LEAVES, 2) == [n01]
    assert vv.decode_trace_leaf(SPEC_LEAVES[1]) == {
        "position": 1,
        "token": 74,
        "draw": 0x0123456789ABCDEF,
        "logit": -77,
    }


def test_merkle_shapes():
    assert vv.merkle_root([]) == bytes(32)
    a, b, c, d, e = (vv.trace_leaf_hash(x) for x in (b"a", b"b", b"c", b"d", b"e"))
    node = vv._node_hash
    assert vv.merkle_root([b"a"]) == a
    assert vv.merkle_root([b"a", b"b"]) == node(a, b)
    assert vv.merkle_root([b"a", b"b", b"c"]) == node(node(a, b), c)
    # Five leaves split at 4: ((ab)(cd)) e.
    assert vv.merkle_root([b"a", b"b", b"c", b"d", b"e"]) == node(node(node(a, b), node(c, d)), e)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 9, 33])
def test_merkle_every_opening(n):
    leaves = [_leaf(i, i + 2, i * 7919, -i) for i in range(n)]
    root = vv.merkle_root(leaves).hex()
    for i in range(n):
        proof = [p.hex() for p in vv.merkle_proof(leaves, i)]
        vv.verify_merkle_opening(root, n, i, leaves[i].hex(), proof)
        # Another leaf, another index, another length: refused.
        with pytest.raises(vv.VerifyError):
            vv.verify_merkle_opening(
                root, n, i, leaves[(i + 1) % n].hex() if n > 1 else "00", proof
            )
        if n > 1:
            with pytest.raises(vv.VerifyError):
                vv.verify_merkle_opening(root, n, (i + 1) % n, leaves[i].hex(), proof)
        # Every sibling matters: flip one bit in each in turn.
        for j in range(len(proof)):
            bad = list(proof)
            flipped = bytearray.fromhex(proof[j])
            flipped[31] ^= 1
            bad[j] = flipped.hex()
            with pytest.raises(vv.VerifyError, match="does not lead"):
                vv.verify_merkle_opening(root, n, i, leaves[i].hex(), bad)
        # A missing or an extra hash: refused before hashing.
        if proof:
            with pytest.raises(vv.VerifyError, match="hashes"):
                vv.verify_merkle_opening(root, n, i, leaves[i].hex(), proof[:-1])
        with pytest.raises(vv.VerifyError, match="hashes"):
            vv.verify_merkle_opening(root, n, i, leaves[i].hex(), proof + ["00" * 32])
    # The length is not hashed into the root, so an opening may also fit a longer tree of
    # the same shape (3 leaves: leaf 0 has the same path in a tree of 4); that is why
    # openings are checked against the signed trace_len. A length that changes the depth
    # of the path is refused.
    proof0 = [p.hex() for p in vv.merkle_proof(leaves, 0)]
    if n & (n - 1) == 0:
        with pytest.raises(vv.VerifyError, match="hashes"):
            vv.verify_merkle_opening(root, n + 1, 0, leaves[0].hex(), proof0)


def test_merkle_three_and_five_wrong_sibling():
    for n in (3, 5):
        leaves = [bytes([i]) * 20 for i in range(n)]
        root = vv.merkle_root(leaves).hex()
        for i in range(n):
            proof = [p.hex() for p in vv.merkle_proof(leaves, i)]
            vv.verify_merkle_opening(root, n, i, leaves[i].hex(), proof)
            # Swap in a sibling from another leaf's opening (a real hash, just the wrong one).
            other = [p.hex() for p in vv.merkle_proof(leaves, (i + 1) % n)]
            for j in range(len(proof)):
                if j < len(other) and other[j] != proof[j]:
                    bad = list(proof)
                    bad[j] = other[j]
                    with pytest.raises(vv.VerifyError):
                        vv.verify_merkle_opening(root, n, i, leaves[i].hex(), bad)


def test_merkle_opening_input_checks():
    leaves = SPEC_LEAVES
    root = vv.merkle_root(leaves).hex()
    proof = [p.hex() for p in vv.merkle_proof(leaves, 0)]
    good = leaves[0].hex()
    for args in [
        (root.upper(), 3, 0, good, proof),
        (root, 3, 3, good, proof),
        (root, 0, 0, good, []),
        (root, 3, -1, good, proof),
        (root, 3, 0, good.upper(), proof),
        (root, 3, 0, "", proof),
        (root, 3, 0, "0", proof),
        (root, 3, 0, "00" * 257, proof),
        (root, 3, 0, good, [proof[0].upper(), proof[1]]),
        (root, 3, 0, good, "not a list"),
    ]:
        with pytest.raises(vv.VerifyError):
            vv.verify_merkle_opening(*args)
    with pytest.raises(vv.VerifyError):
        vv.merkle_proof(leaves, 3)


# Chat completions: a synthetic signed answer (no node needed)

SEED = bytes([7]) * 32
MODEL_IMAGE = "sha256:" + hashlib.sha256(b"vouch test model image").hexdigest()
CHAT_REQUEST = {
    "model": "vouch-tiny-1",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    "max_tokens": 8,
    "temperature": 0,
}
LIMITS = {
    "cpu_millis": 1000,
    "memory_bytes": 268435456,
    "output_bytes": 4194304,
    "pids": 64,
    "timeout_ms": 30000,
    "tmpfs_bytes": 16777216,
}


def _output(content="The", tokens=(54, 74, 71, 0), finish="stop", prompt=14) -> bytes:
    return vv.jcs(
        {
            "content": content,
            "finish_reason": finish,
            "model": "vouch-tiny-1",
            "tokens": list(tokens),
            "usage": {
                "completion_tokens": len(tokens),
                "prompt_tokens": prompt,
                "total_tokens": prompt + len(tokens),
            },
        }
    )


def signed_completion(
    request=CHAT_REQUEST,
    output: bytes | None = None,
    *,
    trace_len=None,
    image=MODEL_IMAGE,
    seed=SEED,
    command=(),
) -> dict:
    """A chat.completion as a node would answer it, signed with a test key."""
    output = _output() if output is None else output
    out = json.loads(output)
    inp = vv.normalize_chat_request(request)
    spec = {
        "image": image,
        "command": list(command),
        "env": [],
        "input_digest": "sha256:" + hashlib.sha256(inp).hexdigest(),
        "limits": dict(LIMITS),
        "determinism": "deterministic",
        "value_at_risk": "0",
        "replicas": 1,
        "nonce": "",
    }
    jid = vv.job_id(spec)
    leaves = [_leaf(i, t, 0, 100) for i, t in enumerate(out["tokens"])]
    n = len(leaves) if trace_len is None else trace_len
    fields = {
        "network_id": vv.network_id("sdk-test").hex(),
        "operator": "00" * 32,
        "sequence": 1,
        "job_id": jid,
        "image": image,
        "input_digest": spec["input_digest"],
        "output_digest": "sha256:" + hashlib.sha256(output).hexdigest(),
        "output_len": len(output),
        "exit_code": 0,
        "trace_root": vv.merkle_root(leaves[:n]).hex(),
        "trace_len": n,
        "issued_at_ms": 1795000000000,
    }
    receipt = resign(fields, seed)
    vouch = {
        "job_id": jid,
        "spec": spec,
        "input": inp.decode(),
        "output": output.decode(),
        "receipt": receipt,
        "links": {},
    }
    return {
        "id": "chatcmpl-" + jid[:32],
        "object": "chat.completion",
        "created": 1795000000,
        "model": out["model"],
        "system_fingerprint": "fp_x",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": out["content"], "refusal": None},
                "logprobs": None,
                "finish_reason": out["finish_reason"],
            }
        ],
        "usage": dict(out["usage"]),
        "vouch": vouch,
    }


OPERATOR = Ed25519PrivateKey.from_private_bytes(SEED).public_key().public_bytes_raw().hex()


def test_chat_completion_verifies():
    resp = signed_completion()
    lines = vv.verify_chat_completion(
        resp,
        CHAT_REQUEST,
        operator=OPERATOR,
        model_image=MODEL_IMAGE,
        network="sdk-test",
        models={"vouch-tiny-1": 4096},
    )
    text = "\n".join(lines)
    for what in (
        "job id: ok",
        "receipt: ok",
        "input: ok",
        "output: ok",
        "trace: ok",
        "model: ok",
        "operator: ok",
        "network: ok",
        "completion: ok",
    ):
        assert what in text
    # SDK dumps add null fields; they do not matter.
    resp["usage"]["completion_tokens_details"] = None
    resp["choices"][0]["message"]["tool_calls"] = None
    vv.verify_chat_completion(resp, CHAT_REQUEST, operator=OPERATOR, model_image=MODEL_IMAGE)


def _tamper(path: str, value):
    resp = signed_completion()
    obj = resp
    keys = path.split(".")
    for k in keys[:-1]:
        obj = obj[int(k)] if k.isdigit() else obj[k]
    obj[keys[-1]] = value
    return resp


@pytest.mark.parametrize(
    "path,value,match",
    [
        ("choices.0.message.content", "Thx", "content received differs"),
        ("choices.0.finish_reason", "length", "finish_reason"),
        ("model", "gpt-4", "model"),
        ("usage.prompt_tokens", 13, "usage.prompt_tokens"),
        ("vouch.output", _output("Thx").decode(), "does not match the signed"),
        ("vouch.input", vv.normalize_chat_request(dict(CHAT_REQUEST, seed=1)).decode(), "SHA-256"),
        ("vouch.job_id", "00" * 32, "job id mismatch"),
        ("vouch.receipt.exit_code", 1, "do not match the encoded"),
        ("vouch", None, "no `vouch` object"),
    ],
)
def test_chat_completion_tampered(path, value, match):
    with pytest.raises(vv.VerifyError, match=match):
        vv.verify_chat_completion(_tamper(path, value), CHAT_REQUEST)


def test_chat_completion_binds_request_operator_and_image():
    resp = signed_completion()
    with pytest.raises(vv.VerifyError, match="not the normalization"):
        vv.verify_chat_completion(resp, dict(CHAT_REQUEST, seed=1))
    with pytest.raises(vv.VerifyError, match="not the normalization"):
        vv.verify_chat_completion(resp, dict(CHAT_REQUEST, max_tokens=9))
    with pytest.raises(vv.VerifyError, match="signed by"):
        vv.verify_chat_completion(resp, CHAT_REQUEST, operator="ab" * 32)
    with pytest.raises(vv.VerifyError, match="model's image"):
        vv.verify_chat_completion(resp, CHAT_REQUEST, model_image="sha256:" + "00" * 32)
    with pytest.raises(vv.VerifyError, match="network"):
        vv.verify_chat_completion(resp, CHAT_REQUEST, network="vouch-devnet")
    # The streamed and the plain request are one input.
    vv.verify_chat_completion(resp, dict(CHAT_REQUEST, stream=False))


def test_chat_completion_checks_output_and_trace():
    # The output must be canonical and self-consistent.
    noncanon = json.dumps(json.loads(_output()), indent=1).encode()
    with pytest.raises(vv.VerifyError, match="canonical"):
        vv.verify_chat_completion(signed_completion(output=noncanon), CHAT_REQUEST)
    bad_usage = _output().replace(b'"total_tokens":18', b'"total_tokens":19')
    with pytest.raises(vv.VerifyError, match="total_tokens"):
        vv.verify_chat_completion(signed_completion(output=bad_usage), CHAT_REQUEST)
    # One leaf per token.
    with pytest.raises(vv.VerifyError, match="one leaf per token"):
        vv.verify_chat_completion(signed_completion(trace_len=3), CHAT_REQUEST)
    # A spec with a command is not a model job.
    with pytest.raises(vv.VerifyError, match="command"):
        vv.verify_chat_completion(signed_completion(command=["step"]), CHAT_REQUEST)


def _chunks(resp: dict, include_usage=True, piece=2) -> list[dict]:
    """Chunks as the node streams them (SPEC.md §7.2)."""
    base = {k: resp[k] for k in ("id", "created", "model", "system_fingerprint")}
    base["object"] = "chat.completion.chunk"
    content = resp["choices"][0]["message"]["content"]
    out = [
        dict(
            base,
            choices=[
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ],
        )
    ]
    for i in range(0, len(content), piece):
        out.append(
            dict(
                base,
                choices=[
                    {
                        "index": 0,
                        "delta": {"content": content[i : i + piece]},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ],
            )
        )
    out.append(
        dict(
            base,
            choices=[
                {
                    "index": 0,
                    "delta": {},
                    "logprobs": None,
                    "finish_reason": resp["choices"][0]["finish_reason"],
                }
            ],
            vouch=resp["vouch"],
        )
    )
    if include_usage:
        out.append(dict(base, choices=[], usage=resp["usage"]))
    return out


def test_stream_verifies_and_catches_tampering():
    req = dict(CHAT_REQUEST, stream=True, stream_options={"include_usage": True})
    resp = signed_completion(req)
    chunks = _chunks(resp)
    lines = vv.verify_stream(chunks, req, operator=OPERATOR, model_image=MODEL_IMAGE)
    assert any(line.startswith("stream: ok") for line in lines)
    # SSE text round trip.
    sse = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    assert vv.parse_sse(sse) == chunks
    with pytest.raises(vv.VerifyError, match="DONE"):
        vv.parse_sse(sse.replace("data: [DONE]\n\n", ""))

    bad = copy.deepcopy(chunks)
    bad[1]["choices"][0]["delta"]["content"] = "X"
    with pytest.raises(vv.VerifyError, match="streamed content differs"):
        vv.verify_stream(bad, req)
    bad = copy.deepcopy(chunks)
    del bad[-1]  # usage asked for, not sent
    with pytest.raises(vv.VerifyError, match="include_usage"):
        vv.verify_stream(bad, req)
    bad = copy.deepcopy(chunks)
    bad[-1]["usage"]["completion_tokens"] = 1
    with pytest.raises(vv.VerifyError, match="usage.completion_tokens"):
        vv.verify_stream(bad, req)
    bad = copy.deepcopy(chunks)
    del bad[-2]["vouch"]
    with pytest.raises(vv.VerifyError, match="no `vouch` object"):
        vv.verify_stream(bad, req)
    bad = copy.deepcopy(chunks)
    bad[1]["vouch"] = resp["vouch"]
    with pytest.raises(vv.VerifyError, match="not the finish_reason"):
        vv.verify_stream(bad, req)
    # Without include_usage no usage chunk is needed.
    vv.verify_stream(_chunks(resp, include_usage=False), dict(req, stream_options=None))


def test_trace_listing_and_openings():
    resp = signed_completion()
    receipt = resp["vouch"]["receipt"]
    tokens = json.loads(resp["vouch"]["output"])["tokens"]
    leaves = [_leaf(i, t, 0, 100) for i, t in enumerate(tokens)]
    listing = {
        "job_id": receipt["job_id"],
        "trace_root": receipt["trace_root"],
        "trace_len": receipt["trace_len"],
        "leaves": [x.hex() for x in leaves],
    }
    decoded = vv.verify_trace(listing, receipt, tokens)
    assert [d["token"] for d in decoded] == tokens
    with pytest.raises(vv.VerifyError, match="leaf 1"):
        vv.verify_trace(listing, receipt, [tokens[0], 99] + tokens[2:])
    with pytest.raises(vv.VerifyError, match="signed trace root"):
        vv.verify_trace(dict(listing, leaves=listing["leaves"][::-1]), receipt)
    for i in range(len(leaves)):
        opening = {
            "job_id": receipt["job_id"],
            "index": i,
            "leaf": leaves[i].hex(),
            "proof": [p.hex() for p in vv.merkle_proof(leaves, i)],
            "trace_root": receipt["trace_root"],
            "trace_len": receipt["trace_len"],
        }
        assert vv.verify_trace_opening(opening, receipt)["token"] == tokens[i]
        with pytest.raises(vv.VerifyError, match="differs from the signed"):
            vv.verify_trace_opening(dict(opening, trace_root="00" * 32), receipt)
