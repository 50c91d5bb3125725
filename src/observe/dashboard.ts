/**
 * The dashboard: one self-contained page (inline CSS and JS, no build, no
 * CDN) that polls /api/state every 2 s. Every value shown is user data
 * (sync, table and key names, row contents, error texts), so the script
 * never builds HTML from strings: it creates elements and sets textContent.
 */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ibex</title>
<style>
  :root { --fg: #1d2330; --muted: #6b7385; --line: #d9dde5; --bg: #f6f7f9; --good: #1b7f3b; --bad: #b3261e; --warn: #a15c00; --accent: #2456c7; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
  header { display: flex; align-items: baseline; gap: 1em; padding: 10px 18px; background: #1d2330; color: #fff; }
  header h1 { margin: 0; font-size: 18px; }
  header .meta { color: #b9c0cf; font-size: 12px; }
  main { padding: 14px 18px; display: grid; gap: 14px; }
  section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; overflow-x: auto; }
  h2 { margin: 0 0 8px; font-size: 15px; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
  th { color: var(--muted); font-weight: 600; font-size: 12px; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .st { display: inline-block; padding: 0 6px; border-radius: 3px; font-size: 12px; background: #e8ebf0; }
  .st.idle, .st.good { background: #dff3e5; color: var(--good); }
  .st.running, .st.copying { background: #e1e9fb; color: var(--accent); }
  .st.stalled, .st.failed, .st.aborted, .st.down { background: #fbe3e1; color: var(--bad); }
  .st.paused { background: #fdf0d9; color: var(--warn); }
  .err { color: var(--bad); font-size: 12px; max-width: 50em; word-break: break-word; }
  .charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 12px; }
  .chart { border: 1px solid var(--line); border-radius: 4px; padding: 6px; }
  .chart .title { font-weight: 600; font-size: 13px; }
  .chart .legend { font-size: 11px; color: var(--muted); }
  .chart .legend b.lag { color: var(--accent); } .chart .legend b.backlog { color: var(--warn); }
  pre { margin: 0; font: 12px/1.3 ui-monospace, Menlo, Consolas, monospace; white-space: pre-wrap; word-break: break-word; }
  pre.key { white-space: pre; word-break: normal; }
  .versions { display: grid; grid-template-columns: 1fr 1fr; gap: 8px; }
  .versions > div { border-radius: 4px; padding: 4px 6px; }
  .win { background: #eef8f0; border: 1px solid #bfe3c9; } .lose { background: #fcefee; border: 1px solid #f0c6c2; }
  .label { font-size: 11px; color: var(--muted); }
  #banner { display: none; padding: 8px 18px; background: #fbe3e1; color: var(--bad); }
  .empty { color: var(--muted); }
</style>
</head>
<body>
<header><h1>ibex</h1><span class="meta" id="meta">loading…</span></header>
<div id="banner"></div>
<main>
  <section><h2>Syncs</h2><table id="syncs"><thead><tr><th>Sync</th><th>Status</th><th>State</th><th>Lag</th><th>Backlog</th><th>Last good run</th><th>Last error</th></tr></thead><tbody></tbody></table></section>
  <section><h2>Lag and backlog, last hour</h2><div class="charts" id="charts"></div></section>
  <section><h2>Recent runs</h2><table id="runs"><thead><tr><th>Run</th><th>Sync</th><th>Kind</th><th>Result</th><th>Started</th><th>ms</th><th>Inserted</th><th>Deleted</th><th>Conflicts</th><th>Truncates</th><th>Error</th></tr></thead><tbody></tbody></table></section>
  <section><h2>Conflicts</h2><table id="conflicts"><thead><tr><th>#</th><th>When</th><th>Sync</th><th>Table</th><th>Key</th><th>Kind / strategy</th><th>Winning and losing versions</th></tr></thead><tbody></tbody></table></section>
  <section><h2>Databases</h2><table id="dbs"><thead><tr><th>Db</th><th>Reachable</th><th>Clock skew</th><th>Error</th></tr></thead><tbody></tbody></table></section>
</main>
<script>
"use strict";
(function () {
  var SVGNS = "http://www.w3.org/2000/svg";
  function el(tag, opts) {
    var e = document.createElement(tag);
    if (opts) {
      if (opts.cls) e.className = opts.cls;
      if (opts.text !== undefined && opts.text !== null) e.textContent = String(opts.text);
      if (opts.title) e.title = String(opts.title);
    }
    for (var i = 2; i < arguments.length; i++) if (arguments[i]) e.appendChild(arguments[i]);
    return e;
  }
  function td(text, cls) { return el("td", { text: text, cls: cls }); }
  function badge(text) { var s = el("span", { cls: "st " + String(text).replace(/[^a-z]/g, ""), text: text }); return s; }
  function age(s) {
    if (s === null || s === undefined) return "-";
    s = Math.max(0, Math.round(s));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  }
  function time(iso) { return iso ? new Date(iso).toLocaleTimeString() : "-"; }
  // A key or value past 2^53 (a snowflake id) is shown as the server sent it: where the browser
  // hands the reviver a number's source text, one a double would round is kept as that text.
  function Exact(text) { this.text = text; }
  function digits(t) { return t.replace(/[eE].*$/, "").replace(/[-.]/g, "").replace(/^0+/, "").length; }
  function parseState(text) {
    return JSON.parse(text, function (k, v, ctx) {
      return typeof v === "number" && ctx && typeof ctx.source === "string" && digits(ctx.source) > 15 ? new Exact(ctx.source) : v;
    });
  }
  function show(v, pad, compact) {
    if (v instanceof Exact) return v.text;
    if (v === null || typeof v !== "object") return JSON.stringify(v);
    var inner = compact ? "" : pad + " ";
    var open = compact ? "" : "\\n" + inner;
    var close = compact ? "" : "\\n" + pad;
    var items = Array.isArray(v)
      ? v.map(function (x) { return show(x, inner, compact); })
      : Object.keys(v).map(function (k) { return JSON.stringify(k) + (compact ? ":" : ": ") + show(v[k], inner, compact); });
    var sep = compact ? "," : "," + open;
    var b = Array.isArray(v) ? ["[", "]"] : ["{", "}"];
    return items.length ? b[0] + open + items.join(sep) + close + b[1] : b[0] + b[1];
  }
  function json(v) { return v === undefined ? "" : show(v, "", false); }
  function fill(id, rows, cols) {
    var body = document.querySelector("#" + id + " tbody");
    body.replaceChildren();
    if (!rows.length) { var r = el("tr"); var c = td("nothing yet", "empty"); c.colSpan = cols; r.appendChild(c); body.appendChild(r); }
    rows.forEach(function (r) { body.appendChild(r); });
  }

  function chart(name, points, nowMs) {
    var W = 360, H = 120, P = 26;
    var box = el("div", { cls: "chart" }, el("div", { cls: "title", text: name }));
    box.dataset.sync = name;
    var svg = document.createElementNS(SVGNS, "svg");
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("width", "100%");
    svg.setAttribute("role", "img");
    // The last hour, or since the first sample when the daemon has run for less.
    var t0 = Math.max(nowMs - 3600000, points.length ? Math.min(points[0].t, nowMs - 60000) : nowMs - 3600000);
    var span = Math.max(1, nowMs - t0);
    var maxLag = 1, maxBacklog = 1;
    points.forEach(function (p) { if (p.lagS !== null && p.lagS > maxLag) maxLag = p.lagS; if (p.backlog > maxBacklog) maxBacklog = p.backlog; });
    function x(t) { return P + (W - 2 * P) * Math.max(0, (t - t0)) / span; }
    function line(color, pick, max) {
      var d = "";
      points.forEach(function (p) { var v = pick(p); if (v === null) return; d += (d ? " L" : "M") + x(p.t).toFixed(1) + " " + (H - P - (H - 2 * P) * v / max).toFixed(1); });
      if (!d) return;
      var path = document.createElementNS(SVGNS, "path");
      path.setAttribute("d", d); path.setAttribute("fill", "none"); path.setAttribute("stroke", color); path.setAttribute("stroke-width", "1.5");
      svg.appendChild(path);
    }
    var axis = document.createElementNS(SVGNS, "path");
    axis.setAttribute("d", "M" + P + " " + (H - P) + " L" + (W - P) + " " + (H - P) + " M" + P + " " + P + " L" + P + " " + (H - P));
    axis.setAttribute("stroke", "#c4c9d4"); axis.setAttribute("fill", "none");
    svg.appendChild(axis);
    function label(text, lx, ly, anchor) {
      var t = document.createElementNS(SVGNS, "text");
      t.setAttribute("x", lx); t.setAttribute("y", ly); t.setAttribute("font-size", "9"); t.setAttribute("fill", "#6b7385");
      if (anchor) t.setAttribute("text-anchor", anchor);
      t.textContent = text; svg.appendChild(t);
    }
    label("-" + Math.round(span / 60000) + " min", P, H - P + 12); label("now", W - P, H - P + 12, "end");
    label(age(maxLag), P - 2, P + 3, "end"); label(String(maxBacklog), W - P + 2, P + 3);
    line("#2456c7", function (p) { return p.lagS; }, maxLag);
    line("#a15c00", function (p) { return p.backlog; }, maxBacklog);
    box.appendChild(svg);
    var last = points.length ? points[points.length - 1] : null;
    var legend = el("div", { cls: "legend" });
    legend.appendChild(el("b", { cls: "lag", text: "lag " }));
    legend.appendChild(document.createTextNode(last ? age(last.lagS) : "-"));
    legend.appendChild(document.createTextNode("  "));
    legend.appendChild(el("b", { cls: "backlog", text: "backlog " }));
    legend.appendChild(document.createTextNode(last ? String(last.backlog) + " keys" : "-"));
    box.appendChild(legend);
    return box;
  }

  function render(s) {
    var nowMs = Date.parse(s.now);
    document.getElementById("meta").textContent = "updated " + new Date(nowMs).toLocaleTimeString() + " · " + s.syncs.length + " sync(s)";
    var banner = document.getElementById("banner");
    banner.style.display = s.control.reachable ? "none" : "block";
    banner.textContent = s.control.reachable ? "" : "the control database is unreachable: " + (s.control.error || "");
    fill("syncs", s.syncs.map(function (y) {
      var tr = el("tr");
      tr.dataset.sync = y.name;
      tr.appendChild(td(y.name));
      tr.appendChild(el("td", null, badge(y.status)));
      tr.appendChild(el("td", null, badge(y.state || "-")));
      tr.appendChild(td(y.lagS === null ? "-" : age(y.lagS), "num lag"));
      tr.appendChild(td(y.backlog.reduce(function (n, b) { return n + b.keys; }, 0), "num backlog"));
      tr.appendChild(td(y.lastGoodAgeS === null ? "never" : age(y.lastGoodAgeS) + " ago"));
      tr.appendChild(td(y.lastError || "", "err"));
      return tr;
    }), 7);
    var charts = document.getElementById("charts");
    charts.replaceChildren();
    s.syncs.forEach(function (y) { charts.appendChild(chart(y.name, s.history[y.name] || [], nowMs)); });
    fill("runs", s.runs.map(function (r) {
      var tr = el("tr");
      tr.dataset.run = r.id;
      tr.appendChild(td("#" + r.id, "num")); tr.appendChild(td(r.sync)); tr.appendChild(td(r.kind));
      tr.appendChild(el("td", null, badge(r.status)));
      tr.appendChild(td(time(r.started)));
      tr.appendChild(td(r.ended ? Date.parse(r.ended) - Date.parse(r.started) : "-", "num"));
      tr.appendChild(td(r.inserted, "num inserted")); tr.appendChild(td(r.deleted, "num")); tr.appendChild(td(r.conflicts, "num")); tr.appendChild(td(r.truncates, "num"));
      tr.appendChild(td(r.error || "", "err"));
      return tr;
    }), 11);
    fill("conflicts", s.conflicts.map(function (c) {
      var tr = el("tr", { cls: "conflict" });
      tr.dataset.conflict = c.id;
      tr.appendChild(td(c.id, "num")); tr.appendChild(td(time(c.created))); tr.appendChild(td(c.sync));
      tr.appendChild(td(c.schemaname + "." + c.relname)); tr.appendChild(el("td", null, el("pre", { cls: "key", text: show(c.key, "", true) })));
      tr.appendChild(td(c.kind + " / " + c.strategy + (c.status !== "applied" ? " (" + c.status + ")" : "")));
      var v = el("div", { cls: "versions" });
      v.appendChild(el("div", { cls: "win" }, el("div", { cls: "label", text: "winner: " + (c.winner || "-") }), el("pre", { text: c.winner_row === null ? "(deleted)" : json(c.winner_row) })));
      var lose = el("div", { cls: "lose" });
      (c.losers || []).forEach(function (l) {
        lose.appendChild(el("div", { cls: "label", text: "loser: " + l.db + (l.constraint ? " (" + l.constraint + ")" : "") }));
        lose.appendChild(el("pre", { text: l.row === null ? "(deleted)" : json(l.row) }));
      });
      v.appendChild(lose);
      tr.appendChild(el("td", null, v));
      return tr;
    }), 7);
    fill("dbs", s.dbs.map(function (d) {
      var tr = el("tr");
      tr.appendChild(td(d.name)); tr.appendChild(el("td", null, badge(d.up ? "good" : "down")));
      tr.appendChild(td(d.skewMs === null ? "-" : d.skewMs + " ms", "num")); tr.appendChild(td(d.error || "", "err"));
      return tr;
    }), 4);
  }

  function poll() {
    fetch("api/state", { cache: "no-store" }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.text();
    }).then(parseState).then(render).catch(function (e) {
      var banner = document.getElementById("banner");
      banner.style.display = "block";
      banner.textContent = "cannot reach the daemon: " + e.message;
    }).finally(function () { setTimeout(poll, 2000); });
  }
  poll();
})();
</script>
</body>
</html>
`;
