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
