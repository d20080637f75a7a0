"""The status page served at ``/``: one self-contained HTML document.

No external assets and no build step: the style and the script are inline,
and the page's Content-Security-Policy allows exactly these two (by hash).
The script asks ``members`` (relative, so a path prefix in front of the
endpoint keeps working) every second and rebuilds the tables with
``textContent`` only: member addresses and metadata come from the network
and are never parsed as HTML.
"""

from __future__ import annotations

from typing import Final

STYLE: Final = """
:root { color-scheme: light dark; --alive: #1a7f37; --suspect: #b7791f; --dead: #cf222e;
  --left: #6e7781; --line: #d0d7de; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; }
h1 { font-size: 1.3em; margin: 0 0 .3em; }
h2 { font-size: 1.05em; margin: 1.4em 0 .4em; }
code, td.mono { font-family: ui-monospace, monospace; }
#summary span { margin-right: 1.2em; }
#state { margin: .3em 0; color: var(--left); }
#state.down { color: var(--dead); font-weight: bold; }
table { border-collapse: collapse; min-width: 40em; }
th, td { text-align: left; padding: .25em .8em; border-bottom: 1px solid var(--line); }
td.status { font-weight: bold; text-transform: uppercase; }
.alive { color: var(--alive); } .suspect { color: var(--suspect); }
.dead { color: var(--dead); } .left { color: var(--left); }
tr[data-status="suspect"] { background: rgba(183, 121, 31, .10); }
tr[data-status="dead"] { background: rgba(207, 34, 46, .10); }
tr.self td.address::after { content: " (this member)"; color: var(--left); font-weight: normal; }
td.meta { max-width: 30em; overflow-wrap: anywhere; }
td.meta.binary { color: var(--left); }
#more { color: var(--left); }
"""

SCRIPT: Final = """
"use strict";
const ROW_LIMIT = 2000;
const REFRESH_MS = 1000;
let lastSeen = null;

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function metadataCell(item) {
  if (item.metadata_b64 !== undefined) {
    return cell("base64: " + item.metadata_b64, "meta mono binary");
  }
  return cell(item.metadata || "", "meta mono");
}

function clock(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString();
}

function render(doc) {
  document.getElementById("address").textContent = doc.address;
  document.getElementById("cluster").textContent = doc.cluster;
  document.getElementById("health").textContent = String(doc.local_health);
  const counts = {alive: 0, suspect: 0, dead: 0, left: 0};
  for (const m of doc.members) counts[m.status] = (counts[m.status] || 0) + 1;
  for (const status of Object.keys(counts)) {
    const el = document.getElementById("count-" + status);
    if (el) el.textContent = String(counts[status]);
  }
  const rows = document.createDocumentFragment();
  for (const m of doc.members.slice(0, ROW_LIMIT)) {
    const tr = document.createElement("tr");
    tr.dataset.address = m.address;
    tr.dataset.status = m.status;
    if (m.address === doc.address) tr.className = "self";
    tr.append(cell(m.address, "address mono"), cell(m.status, "status " + m.status),
              cell(String(m.incarnation), "mono"), metadataCell(m));
    rows.append(tr);
  }
  document.getElementById("members").replaceChildren(rows);
  const more = doc.members.length - ROW_LIMIT;
  document.getElementById("more").textContent = more > 0 ? "... and " + more + " more" : "";
  const events = document.createDocumentFragment();
  for (const e of doc.events) {
    const tr = document.createElement("tr");
    tr.dataset.kind = e.kind;
    let what = e.kind;
    if (e.kind === "status") what = e.previous === null ? "discovered" : e.previous + " \\u2192";
    if (e.kind === "missed") what = "missed " + e.count + " events";
    tr.append(cell(clock(e.time), "mono"), cell(what), cell(e.address || "", "mono"),
              cell(e.status || "", e.status ? "status " + e.status : ""));
    events.append(tr);
  }
  document.getElementById("events").replaceChildren(events);
}

async function refresh() {
  const state = document.getElementById("state");
  try {
    const options = {cache: "no-store"};
    if (AbortSignal.timeout) options.signal = AbortSignal.timeout(3000);
    const answer = await fetch("members", options);
    if (!answer.ok) throw new Error("HTTP " + answer.status);
    render(await answer.json());
    lastSeen = Date.now() / 1000;
    state.className = "";
    state.textContent = "updated " + clock(lastSeen);
  } catch (error) {
    state.className = "down";
    state.textContent = "unreachable (" + error.message + ")" +
      (lastSeen === null ? "" : ", last answer at " + clock(lastSeen));
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

refresh();
"""

PAGE: Final = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>trio_swim member</title>
<style>{STYLE}</style>
</head>
<body>
<h1>trio_swim member <code id="address">...</code> in <code id="cluster">...</code></h1>
<div id="summary">
<span class="alive">alive <b id="count-alive">0</b></span>
<span class="suspect">suspect <b id="count-suspect">0</b></span>
<span class="dead">dead <b id="count-dead">0</b></span>
<span class="left">left <b id="count-left">0</b></span>
<span>local health <b id="health">-</b></span>
</div>
<div id="state">loading</div>
<table>
<thead><tr><th>Address</th><th>Status</th><th>Incarnation</th><th>Metadata</th></tr></thead>
<tbody id="members"></tbody>
</table>
<div id="more"></div>
<h2>Last events</h2>
<table>
<thead><tr><th>Time</th><th>Change</th><th>Member</th><th>Status</th></tr></thead>
<tbody id="events"></tbody>
</table>
<script>{SCRIPT}</script>
</body>
</html>
"""
