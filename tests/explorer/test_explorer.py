"""The verifier's explorer page in a real headless Chromium, against a running devnet.

`.ci/run` runs this after `scripts/devnet.sh up` (by hand: `bash scripts/devnet.sh &&
.venv/bin/python -m pytest -q tests/explorer`). Chromium (Debian's `chromium`) loads
`VOUCH_EXPLORER_URL` (default the devnet verifier, http://127.0.0.1:8090/), runs the
page's script against the verifier's API and dumps the rendered DOM; the test reads the
tables as a user would and compares them with the API: every operator with its stake and
status (the dishonest one jailed), the dispute that slashed it, the receipts the verifier
heard, the latest ledger events. Without Chromium or a devnet it is skipped, or fails
when CI is `true`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from html.parser import HTMLParser

import pytest

URL = os.environ.get("VOUCH_EXPLORER_URL", "http://127.0.0.1:8090/")
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _unavailable(why: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {why}", pytrace=False)
    pytest.skip(why)


def api(path: str):
    with _HTTP.open(URL.rstrip("/") + path, timeout=10) as r:
        return json.load(r)


class Tables(HTMLParser):
    """Collects the text of each table's body rows, by table id, and a few ids' text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.body_attrs: dict[str, str] = {}
        self.text_of: dict[str, str] = {}
        self._table: str | None = None
        self._in_body = False
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._capture: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body_attrs = {k: v or "" for k, v in a.items()}
        if tag == "table":
            self._table = a.get("id")
            self.tables[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []
        if a.get("id") in ("service-summary", "status", "verifier-key", "receipts-note"):
            self._capture = a["id"]
            self.text_of[self._capture] = ""

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._table = None
        if tag in ("p", "span"):
            self._capture = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._capture:
            self.text_of[self._capture] += data


def render() -> Tables:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        _unavailable("chromium is not installed (Debian: apt-get install chromium)")
    p = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--virtual-time-budget=10000", "--dump-dom", URL],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert p.returncode == 0, f"chromium exited {p.returncode}: {p.stderr[-2000:]}"
    t = Tables()
    t.feed(p.stdout)
    return t


def test_the_explorer_shows_operators_disputes_receipts_and_the_log():
    try:
        registry = api("/v1/registry")
    except OSError as e:
        _unavailable(f"no verifier at {URL} ({e}); start the devnet first")
    page = render()
    assert page.body_attrs.get("data-loaded") == "true", (
        f"the page never loaded its data: {page.text_of.get('status')}"
    )
    assert page.text_of["verifier-key"].strip() == registry["verifier"]

    # Operators: each one, with its stake and status as the registry says.
    shown = {row[0]: row for row in page.tables["operators"]}
    assert set(shown) == {o["operator"] for o in registry["operators"]}, shown
    jailed = [o for o in registry["operators"] if o["jailed_by_slash"]]
    assert len(jailed) == 1, "the devnet's story slashes exactly one operator"
    for o in registry["operators"]:
        row = shown[o["operator"]]
        assert row[2] == o["stake_value"], (row, o)
        assert row[1] == ("jailed (slashed)" if o["jailed_by_slash"] else "active"), (row, o)
        assert row[8] == "holds", row
    assert "cost of corruption" in page.text_of["service-summary"]

    # Disputes: the one that slashed the dishonest operator, and its verdict.
    bad = jailed[0]["operator"]
    disputes = api("/v1/disputes?limit=50")["disputes"]
    rows = page.tables["disputes"]
    assert len(rows) == len(disputes) >= 1, rows
    slashed = [r for r in rows if r[7] == "slashed"]
    assert len(slashed) == 1, rows
    assert bad.startswith(slashed[0][3].rstrip("…")), (slashed, bad)
    assert [r[9] for r in rows] == [d["kind"] for d in disputes], rows

    # Receipts heard on the network, newest first.
    heard = api("/v1/receipts?limit=25")["receipts"]
    assert len(page.tables["receipts"]) == len(heard) >= 1, page.tables["receipts"]
    assert heard[-1]["receipt"]["job_id"].startswith(page.tables["receipts"][0][1].rstrip("…"))

    # The ledger log's tail, newest first, ending with the latest event.
    events = api("/v1/events?tail=25")["events"]
    log = page.tables["events"]
    assert [r[0] for r in log] == [str(e["seq"]) for e in reversed(events)], log
    assert "close_dispute" in [r[2] for r in log], log
