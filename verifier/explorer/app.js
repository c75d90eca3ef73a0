// The explorer: reads this verifier's JSON API and renders it as text (never as HTML).
"use strict";

const REFRESH_MS = 3000;

async function api(path) {
  const r = await fetch(path, { headers: { accept: "application/json" } });
  const body = await r.json().catch(() => null);
  if (!r.ok) {
    const msg = body && body.error ? body.error.message : `HTTP ${r.status}`;
    const e = new Error(`${path}: ${msg}`);
    e.status = r.status;
    e.code = body && body.error ? body.error.code : null;
    throw e;
  }
  return body;
}

function short(hex, n = 16) {
  return typeof hex === "string" && hex.length > n ? hex.slice(0, n) + "…" : String(hex ?? "");
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function fill(tableId, rows, empty) {
  const tbody = document.querySelector(`#${tableId} tbody`);
  const cols = document.querySelectorAll(`#${tableId} thead th`).length;
  tbody.replaceChildren();
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    tr.className = "empty";
    const td = cell(empty);
    td.colSpan = cols;
    tr.append(td);
    tbody.append(tr);
    return;
  }
  for (const r of rows) {
    const tr = document.createElement("tr");
    for (const c of r.cells) tr.append(c);
    if (r.id) tr.dataset.id = r.id;
    tbody.append(tr);
  }
}

function when(ms) {
  const n = Number(ms);
  return Number.isFinite(n) && n > 0 ? new Date(n).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "";
}

function renderSecurity(sec, registry) {
  const peer = new Map((registry.operators || []).map((o) => [o.operator, o]));
  fill("operators", sec.operators.map((o) => {
    const reg = peer.get(o.operator) || {};
    const status = o.jailed ? (reg.jailed_by_slash ? "jailed (slashed)" : "inactive") : "active";
    return {
      id: o.operator,
      cells: [
        cell(o.operator, "key"),
        cell(status, o.jailed ? "bad" : "ok"),
        cell(o.stake_value, "num"),
        cell(o.slashable_per_offence, "num"),
        cell(String(o.open_jobs), "num"),
        cell(o.open_value_at_risk, "num"),
        cell(o.cap, "num"),
        cell(o.margin, "num"),
        cell(o.condition_holds ? "holds" : "broken", o.condition_holds ? "ok" : "bad"),
      ],
    };
  }), "no operator is registered yet");
  const s = sec.service;
  document.getElementById("service-summary").textContent =
    `cost of corruption ${s.cost_of_corruption} vs profit from corruption ${s.profit_from_corruption} ` +
    `(γ = ${sec.gamma}, a wrong result slashes ${sec.wrong_result_slash_ppm / 10000}% of the stake, ` +
    `challenge window ${Math.round(sec.challenge_window_ms / 1000)} s): ` +
    (s.every_operator_condition_holds && s.cost_exceeds_profit
      ? "every operator's open value at risk is covered by its stake"
      : "NOT covered — an operator holds more value at risk than its stake covers");
}

function renderDisputes(d) {
  fill("disputes", d.disputes.map((x) => {
    const v = x.verdict || {};
    const r = v.receipt || {};
    return {
      id: x.dispute,
      cells: [
        cell(short(x.dispute), "key"),
        cell(String(x.opened_seq), "num"),
        cell(x.state),
        cell(short(v.operator || x.operator), "key"),
        cell(short(v.job_id || ((x.withholding || {}).receipt || {}).job_id || r.job_id), "key"),
        cell(short(x.challenger), "key"),
        cell(`${x.bond.amount} ${x.bond.asset}`),
        cell(v.outcome || "pending", v.outcome === "slashed" || v.outcome === "already_slashed" ? "bad" : ""),
        cell(v.reason || (x.withholding ? `the operator must publish the demanded evidence by ${x.withholding.deadline_ms} ms` : "")),
        cell(x.kind || ""),
      ],
    };
  }), "no dispute yet");
}

function renderReceipts(rec) {
  const rows = (rec.receipts || []).slice().reverse().map((h) => {
    const r = h.receipt;
    return {
      id: r.job_id,
      cells: [
        cell(when(h.received_at_ms)),
        cell(short(r.job_id), "key"),
        cell(short(r.operator), "key"),
        cell(String(r.sequence), "num"),
        cell(short(r.output_digest, 23), "key"),
        cell(String(r.exit_code), "num"),
        cell(String(r.trace_len), "num"),
      ],
    };
  });
  document.getElementById("receipts-note").textContent = `${rec.heard} receipts heard on the network since the verifier started`;
  fill("receipts", rows, "no receipt heard yet");
}

function renderEvents(ev) {
  fill("events", ev.events.slice().reverse().map((e) => {
    const req = (e.payload && e.payload.request) || {};
    return {
      id: String(e.seq),
      cells: [
        cell(String(e.seq), "num"),
        cell(when(e.at_ms)),
        cell(e.kind, e.kind === "slash" ? "bad" : ""),
        cell(short(req.actor), "key"),
        cell(short(e.hash), "key"),
      ],
    };
  }), "the ledger is empty");
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const [registry, sec, disputes, events] = await Promise.all([
      api("/v1/registry"), api("/v1/security"), api("/v1/disputes?limit=50"), api("/v1/events?tail=25"),
    ]);
    document.getElementById("network-id").textContent = short(registry.network_id, 16);
    document.getElementById("verifier-key").textContent = registry.verifier;
    renderSecurity(sec, registry);
    renderDisputes(disputes);
    renderEvents(events);
    try {
      renderReceipts(await api("/v1/receipts?limit=25"));
    } catch (e) {
      document.getElementById("receipts-note").textContent =
        e.code === "p2p_disabled" ? "this verifier is not on the peer-to-peer network (--p2p-listen), so it hears no receipts" : e.message;
      fill("receipts", [], "no receipts");
    }
    status.textContent = `updated ${new Date().toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z")}`;
    status.className = "muted";
    document.body.dataset.loaded = "true";
  } catch (e) {
    status.textContent = `cannot read the verifier: ${e.message}`;
    status.className = "bad";
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
