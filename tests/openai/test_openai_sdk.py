"""The official `openai` Python SDK against real `vouch-node` processes (proto/SPEC.md §7).

Every answer is checked with proto/tools/vouch_verify.py — an independent, pure-Python
verifier — against the node's operator key (from `vouch-node keys show`) and the model's
image id: the signature, the input (recomputed from the request we sent), the output,
and that what the SDK handed us is what was signed.

Run:
  python3 -m venv /tmp/sdkv && /tmp/sdkv/bin/pip install -q -r tests/openai/requirements.txt
  /tmp/sdkv/bin/python -m pytest -q tests/openai
"""

from __future__ import annotations

import json
import subprocess
import urllib.request

import openai
import pytest

from conftest import API_KEY, MODEL, MODEL_IMAGE_REF, NETWORK

SYSTEM = {"role": "system", "content": "You are a terse assistant."}
USER = {"role": "user", "content": "What does an operator sign?"}
MODELS = {MODEL: 4096}


def create(node, request: dict, **client_kw):
    """client.chat.completions.create(**request); returns (parsed SDK object, its dict)."""
    resp = node.client(**client_kw).chat.completions.create(**request)
    return resp, resp.model_dump()


def stream(node, request: dict) -> list:
    """The SDK's stream, drained: the chunk objects in order."""
    with node.client().chat.completions.create(**request) as s:
        return list(s)


def verify(vv, node, model_image, resp: dict, request: dict) -> list[str]:
    return vv.verify_chat_completion(
        resp,
        request,
        operator=node.operator,
        model_image=model_image,
        network=NETWORK,
        models=MODELS,
    )


# --- models ------------------------------------------------------------------------------


def test_models_list_shows_the_model_and_its_image(warm_node, cold_node, model_image):
    models = warm_node.client().models.list()
    by_id = {m.id: m for m in models.data}
    assert MODEL in by_id, [m.id for m in models.data]
    m = by_id[MODEL]
    assert m.object == "model" and m.owned_by == "vouch"
    extra = m.model_extra["vouch"]
    assert extra["image"] == model_image
    assert extra["image_ref"] == MODEL_IMAGE_REF
    assert extra["warm"] is True
    assert extra["max_tokens"] == MODELS[MODEL]

    one = warm_node.client().models.retrieve(MODEL)
    assert one.id == MODEL and one.model_extra["vouch"]["image"] == model_image

    cold = {m.id: m for m in cold_node.client().models.list().data}[MODEL]
    assert cold.model_extra["vouch"]["warm"] is False
    assert cold.model_extra["vouch"]["image"] == model_image


# --- a plain completion, verified ---------------------------------------------------------


def test_chat_completion_is_signed_and_verifies(vv, warm_node, model_image):
    request = {"model": MODEL, "messages": [SYSTEM, USER], "max_tokens": 32, "temperature": 0}
    resp, d = create(warm_node, request)
    content = resp.choices[0].message.content
    assert isinstance(content, str) and content, resp
    assert resp.choices[0].finish_reason in ("stop", "length")
    assert resp.choices[0].message.role == "assistant"
    assert len(resp.choices) == 1 and resp.object == "chat.completion" and resp.model == MODEL
    u = resp.usage
    assert u.prompt_tokens > 0 and 1 <= u.completion_tokens <= 32
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    if resp.choices[0].finish_reason == "length":
        assert u.completion_tokens == 32

    vouch = resp.model_extra["vouch"]
    assert vouch["receipt"]["operator"] == warm_node.operator
    lines = verify(vv, warm_node, model_image, d, request)
    text = "\n".join(lines)
    for ok in (
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
        assert ok in text, text

    # The raw HTTP body (not the SDK's model) verifies the same way.
    raw = warm_node.client().chat.completions.with_raw_response.create(**request)
    body = json.loads(raw.http_response.content)
    verify(vv, warm_node, model_image, body, request)
    assert body["vouch"]["job_id"] == vouch["job_id"], "the same request is the same job"

    # The verifier is not a rubber stamp: another operator, model, request or content fails.
    with pytest.raises(vv.VerifyError, match="signed by"):
        vv.verify_chat_completion(d, request, operator="ab" * 32)
    with pytest.raises(vv.VerifyError, match="model's image"):
        vv.verify_chat_completion(d, request, model_image="sha256:" + "00" * 32)
    with pytest.raises(vv.VerifyError, match="not the normalization"):
        vv.verify_chat_completion(d, dict(request, max_tokens=31))
    forged = json.loads(json.dumps(d))
    forged["choices"][0]["message"]["content"] = content + "!"
    with pytest.raises(vv.VerifyError, match="differs from the signed content"):
        vv.verify_chat_completion(forged, request)


def test_spec_example_normalizes_as_written(vv, warm_node, model_image):
    """SPEC.md §7.1's worked example, sent through the SDK: the node's input is the text
    written in the spec, and the verifier's normalization agrees."""
    request = {
        "model": MODEL,
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": 'Say "hi"\n'}]},
        ],
        "temperature": 0.8,
        "top_p": 0.9,
        "seed": 7,
        "max_tokens": 64,
        "stop": "\n\n",
        "user": "alice",
    }
    resp, d = create(warm_node, request)
    want = (
        r'{"max_tokens":64,"messages":[{"content":"Be brief.","role":"system"},'
        r'{"content":"Say \"hi\"\n","role":"user"}],"model":"vouch-tiny-1","seed":7,'
        r'"stop":["\n\n"],"temperature_milli":800,"top_p_milli":900}'
    )
    assert d["vouch"]["input"] == want
    assert d["vouch"]["receipt"]["input_digest"] == (
        "sha256:636b390549d61b1cc82b07ae327eae400b63877238ea06f9ea56c3c7ede864b4"
    )
    verify(vv, warm_node, model_image, d, request)


# --- streaming -----------------------------------------------------------------------------


def test_streaming_matches_and_verifies(vv, warm_node, model_image):
    base = {
        "model": MODEL,
        "messages": [SYSTEM, USER],
        "max_tokens": 48,
        "temperature": 0.7,
        "seed": 3,
    }
    plain, _ = create(warm_node, base)

    request = dict(base, stream=True, stream_options={"include_usage": True})
    chunks = stream(warm_node, request)
    dicts = [c.model_dump() for c in chunks]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1

    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == plain.choices[0].message.content

    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason is not None]
    assert len(finish) == 1
    assert finish[0].choices[0].finish_reason == plain.choices[0].finish_reason
    with_vouch = [c for c in chunks if (c.model_extra or {}).get("vouch") is not None]
    assert with_vouch == finish, "the finish chunk carries the vouch object"
    vouch = finish[0].model_extra["vouch"]
    assert vouch["job_id"] == plain.model_extra["vouch"]["job_id"], (
        "stream flags are not in the input"
    )

    usage = [c for c in chunks if c.usage is not None]
    assert len(usage) == 1 and usage[0].choices == [] and usage[0] is chunks[-1]
    assert usage[0].usage.completion_tokens == plain.usage.completion_tokens

    lines = vv.verify_stream(
        dicts,
        request,
        operator=warm_node.operator,
        model_image=model_image,
        network=NETWORK,
        models=MODELS,
    )
    assert any(line.startswith("stream: ok") for line in lines), lines

    # A stream with a content delta changed no longer verifies.
    forged = json.loads(json.dumps(dicts))
    for c in forged:
        if c["choices"] and c["choices"][0]["delta"].get("content"):
            c["choices"][0]["delta"]["content"] = "X" + c["choices"][0]["delta"]["content"][1:]
            break
    if forged != dicts:
        with pytest.raises(vv.VerifyError, match="streamed content differs"):
            vv.verify_stream(forged, request)


def test_raw_sse_ends_with_done(vv, warm_node, model_image):
    """The wire format without the SDK: data: events, the last one [DONE]."""
    request = {
        "model": MODEL,
        "messages": [USER],
        "max_tokens": 8,
        "temperature": 0,
        "stream": True,
    }
    req = urllib.request.Request(
        warm_node.url + "/v1/chat/completions",
        data=json.dumps(request).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.headers.get("Content-Type", "").startswith("text/event-stream")
        body = r.read().decode()
    assert body.rstrip().endswith("data: [DONE]")
    chunks = vv.parse_sse(body)
    vv.verify_stream(chunks, request, operator=warm_node.operator, model_image=model_image)


# --- errors --------------------------------------------------------------------------------


def test_unknown_model_is_not_found(warm_node):
    with pytest.raises(openai.NotFoundError) as e:
        warm_node.client().chat.completions.create(model="gpt-4o", messages=[USER], max_tokens=4)
    assert e.value.status_code == 404
    assert e.value.code == "model_not_found"
    assert e.value.param == "model"
    with pytest.raises(openai.NotFoundError):
        warm_node.client().models.retrieve("gpt-4o")


@pytest.mark.parametrize(
    "kwargs,param",
    [
        ({"n": 2}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 5000}, "max_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"seed": -1}, "seed"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "tool", "content": "x", "tool_call_id": "t"}]}, "messages[0].role"),
    ],
)
def test_bad_requests_are_400_with_param(vv, warm_node, kwargs, param):
    request = {"model": MODEL, "messages": [USER], "max_tokens": 4}
    request.update(kwargs)
    with pytest.raises(openai.BadRequestError) as e:
        warm_node.client().chat.completions.create(**request)
    assert e.value.status_code == 400
    assert e.value.param == param, e.value.body
    assert e.value.code == "invalid_value"
    assert e.value.type == "invalid_request_error"
    # The independent normalization refuses the same field.
    with pytest.raises(vv.ChatRequestError) as mine:
        vv.normalize_chat_request(request, MODELS)
    assert mine.value.param == param


def test_api_keys(vv, keyed_node, model_image):
    with pytest.raises(openai.AuthenticationError) as e:
        keyed_node.client(api_key="not-the-key").models.list()
    assert e.value.status_code == 401 and e.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        keyed_node.client(api_key="not-the-key").chat.completions.create(
            model=MODEL, messages=[USER], max_tokens=4
        )
    status, body = keyed_node.get_json("/v1/models", api_key="")
    assert status == 401 and body["error"]["code"] == "missing_api_key", body

    assert MODEL in [m.id for m in keyed_node.client(api_key=API_KEY).models.list().data]
    request = {"model": MODEL, "messages": [USER], "max_tokens": 8, "temperature": 0}
    _, d = create(keyed_node, request, api_key=API_KEY)
    verify(vv, keyed_node, model_image, d, request)
    # /healthz stays open.
    with urllib.request.urlopen(keyed_node.url + "/healthz", timeout=10) as r:
        assert r.status == 200


# --- determinism: cold and warm ------------------------------------------------------------


def test_cold_and_warm_agree_and_seed_matters(vv, warm_node, cold_node, model_image):
    request = {
        "model": MODEL,
        "messages": [SYSTEM, USER],
        "max_tokens": 64,
        "temperature": 0.8,
        "top_p": 0.9,
        "seed": 7,
    }
    warm, wd = create(warm_node, request)
    cold, cd = create(cold_node, request)
    verify(vv, warm_node, model_image, wd, request)
    verify(vv, cold_node, model_image, cd, request)

    assert warm.choices[0].message.content.encode() == cold.choices[0].message.content.encode()
    assert wd["vouch"]["output"] == cd["vouch"]["output"]
    rw, rc = wd["vouch"]["receipt"], cd["vouch"]["receipt"]
    for k in (
        "job_id",
        "image",
        "input_digest",
        "output_digest",
        "output_len",
        "trace_root",
        "trace_len",
        "exit_code",
        "network_id",
    ):
        assert rw[k] == rc[k], k
    assert wd["vouch"]["job_id"] == cd["vouch"]["job_id"]
    assert wd["vouch"]["spec"] == cd["vouch"]["spec"]
    assert wd["vouch"]["spec"]["command"] == [] == cd["vouch"]["spec"]["command"]
    assert rw["operator"] != rc["operator"], "two nodes, two keys"

    # Another seed is another job with (for 64 sampled tokens) another text.
    other_req = dict(request, seed=8)
    other, od = create(warm_node, other_req)
    verify(vv, warm_node, model_image, od, other_req)
    assert od["vouch"]["job_id"] != wd["vouch"]["job_id"]
    assert other.choices[0].message.content != warm.choices[0].message.content
    # ... and the same seed again is the same job and the same signed receipt.
    again, ad = create(cold_node, request)
    assert ad["vouch"]["receipt"] == cd["vouch"]["receipt"]


# --- the trace and Merkle openings ----------------------------------------------------------


def test_trace_openings_verify_against_the_signed_root(vv, warm_node, model_image):
    request = {
        "model": MODEL,
        "messages": [SYSTEM, USER],
        "max_tokens": 40,
        "temperature": 0.9,
        "seed": 11,
    }
    resp, d = create(warm_node, request)
    verify(vv, warm_node, model_image, d, request)
    receipt = d["vouch"]["receipt"]
    out = json.loads(d["vouch"]["output"])
    n = resp.usage.completion_tokens
    assert receipt["trace_len"] == n == len(out["tokens"])
    job = d["vouch"]["job_id"]

    status, listing = warm_node.get_json(f"/v1/jobs/{job}/trace")
    assert status == 200, listing
    assert len(listing["leaves"]) == receipt["trace_len"] == n
    decoded = vv.verify_trace(listing, receipt, out["tokens"])
    assert [x["position"] for x in decoded] == list(range(n))

    for i in sorted({0, 1, n // 2, n - 1}):
        status, opening = warm_node.get_json(f"/v1/jobs/{job}/trace/{i}")
        assert status == 200, opening
        assert opening["index"] == i and opening["job_id"] == job
        # Against the signed root and length, not the ones the opening restates.
        vv.verify_merkle_opening(
            receipt["trace_root"], receipt["trace_len"], i, opening["leaf"], opening["proof"]
        )
        leaf = vv.verify_trace_opening(opening, receipt)
        assert leaf["position"] == i and leaf["token"] == out["tokens"][i]
        assert opening["leaf"] == listing["leaves"][i]
        # A wrong sibling does not verify.
        if opening["proof"]:
            bad = list(opening["proof"])
            bad[0] = ("0" if bad[0][0] != "0" else "1") + bad[0][1:]
            with pytest.raises(vv.VerifyError):
                vv.verify_merkle_opening(
                    receipt["trace_root"], receipt["trace_len"], i, opening["leaf"], bad
                )

    status, body = warm_node.get_json(f"/v1/jobs/{job}/trace/{n}")
    assert status == 404 and body["error"]["code"] == "no_such_leaf", body
    assert body["error"]["type"] == "invalid_request_error"


def test_step_mode_recomputes_an_opened_leaf(vv, cold_node, model_image):
    """SPEC.md §7.6: one token, recomputed alone with `vouch-infer step` in the image the
    receipt names, equals the leaf the operator opened against its signed root."""
    request = {
        "model": MODEL,
        "messages": [SYSTEM, USER],
        "max_tokens": 24,
        "temperature": 1.1,
        "top_p": 0.95,
        "seed": 99,
    }
    _, d = create(cold_node, request)
    verify(vv, cold_node, model_image, d, request)
    receipt = d["vouch"]["receipt"]
    tokens = json.loads(d["vouch"]["output"])["tokens"]
    for t in sorted({0, len(tokens) // 2, len(tokens) - 1}):
        status, opening = cold_node.get_json(f"/v1/jobs/{receipt['job_id']}/trace/{t}")
        assert status == 200, opening
        vv.verify_trace_opening(opening, receipt)
        step_input = json.dumps(
            {"request": json.loads(d["vouch"]["input"]), "prefix": tokens[:t], "position": t}
        )
        proc = subprocess.run(
            [
                "docker",
                "run",
                "-i",
                "--rm",
                "--network",
                "none",
                "--read-only",
                "--cap-drop",
                "ALL",
                "--security-opt",
                "no-new-privileges",
                "--user",
                "65534:65534",
                receipt["image"],
                "step",
            ],
            input=step_input.encode(),
            capture_output=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        got = json.loads(proc.stdout)
        assert got == {"leaf": opening["leaf"], "token": tokens[t]}, (t, got, opening)
