// kbatch per-index view: plain JS, no build step. One canvas cell per index, a virtualized list of
// collapsed ranges, filters by state and reason, attempts and log tails of one index on click.
"use strict";
(function () {
  var t0 = performance.now();
  var params = new URLSearchParams(location.search);
  var base = location.pathname.replace(/\/view\/[^/]*$/, "");
  var q = { dag_id: params.get("dag_id") || "", run_id: params.get("run_id") || "",
            task_id: params.get("task_id") || "", map_index: params.get("map_index") || "-1" };
  // Airflow 3.3 leaves {MAP_INDEX} unreplaced in the iframe's URL of a task that is not mapped
  if (!/^-?[0-9]+$/.test(q.map_index)) q.map_index = "-1";
  var COLORS = { succeeded: "#38a169", failed: "#e53e3e", running: "#3182ce", pending: "#a0aec0",
                 backoff: "#dd6b20", skipped: "#b7791f", not_run: "#4a5568", waiting: "#e2e8f0" };
  var LABELS = { succeeded: "succeeded", failed: "failed", running: "running", pending: "pending",
                 backoff: "waiting in backoff", skipped: "not run (success policy)",
                 not_run: "not run (stage ended)", waiting: "not started" };
  var data = null, states = [], filter = null, items = [], cell = 8, cols = 1, timer = null;
  var ROW = 22;

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function qs(extra) {
    var p = new URLSearchParams(q);
    for (var k in extra || {}) p.set(k, extra[k]);
    return p.toString();
  }
  function getJSON(path, extra) {
    return fetch(base + path + "?" + qs(extra), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (body) {
          if (!r.ok) {
            var why = r.status === 401 || r.status === 403 ? "not allowed to see this DAG (" + r.status + ")" : "HTTP " + r.status;
            throw new Error(why + (body && body.detail ? ": " + JSON.stringify(body.detail) : ""));
          }
          return body;
        });
      });
  }
  function fmtSecs(s) {
    if (s === null || s === undefined) return "";
    if (s < 60) return s.toFixed(1) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
    return (s / 3600).toFixed(1) + " h";
  }
  function setStatus(text, cls) { var s = $("status"); s.textContent = text; s.className = cls || "muted"; }

  // ------------------------------------------------------------------ filters
  function matches(i) {
    if (!filter) return true;
    if (filter.state) return states[i] === filter.state;
    return data.grid.reason[i] === filter.reason;
  }
  function buildItems() {
    // collapsed ranges of consecutive matching indexes with the same state (and reason)
    items = [];
    var g = data.grid, n = g.completions, cur = null;
    for (var i = 0; i < n; i++) {
      if (!matches(i)) { cur = null; continue; }
      var key = states[i] + "|" + (g.reason[i] || "");
      if (cur && cur.key === key && cur.to === i - 1) { cur.to = i; continue; }
      cur = { from: i, to: i, key: key, state: states[i], reason: g.reason[i] };
      items.push(cur);
    }
    $("spacer").style.height = (items.length * ROW) + "px";
    $("filterlabel").textContent = (filter ? (filter.state ? LABELS[filter.state] : "reason " + filter.reason) : "all indexes") +
      ": " + items.length + " range" + (items.length === 1 ? "" : "s");
    $("clear").hidden = !filter;
    renderRows();
  }
  function renderRows() {
    var list = $("list"), rows = $("rows");
    var first = Math.max(0, Math.floor(list.scrollTop / ROW) - 5);
    var last = Math.min(items.length, first + Math.ceil(list.clientHeight / ROW) + 10);
    rows.style.top = (first * ROW) + "px";
    rows.textContent = "";
    var g = data.grid;
    for (var k = first; k < last; k++) {
      var it = items[k];
      var r = el("div", { "class": "row", "data-from": it.from, "data-state": it.state });
      var dot = el("span", { "class": "dot" }); dot.style.background = COLORS[it.state];
      r.appendChild(dot);
      var label = it.from === it.to ? "index " + it.from : "indexes " + it.from + "-" + it.to + " (" + (it.to - it.from + 1) + ")";
      label += "  " + LABELS[it.state];
      if (it.reason) label += ", " + it.reason;
      if (it.from === it.to && g.attempts[it.from] > 1) label += ", " + g.attempts[it.from] + " attempts";
      r.appendChild(document.createTextNode(label));
      rows.appendChild(r);
    }
  }

  // ------------------------------------------------------------------ the grid (canvas)
  function drawGrid() {
    var g = data.grid, n = g.completions, canvas = $("grid");
    var width = Math.max(200, Math.min(document.documentElement.clientWidth - 30, 1400));
    cell = n <= 500 ? 14 : n <= 2000 ? 10 : n <= 10000 ? 7 : 4;
    cols = Math.max(1, Math.floor(width / cell));
    var rowsN = Math.ceil(n / cols);
    var dpr = window.devicePixelRatio || 1;
    canvas.style.width = (cols * cell) + "px"; canvas.style.height = (rowsN * cell) + "px";
    canvas.width = cols * cell * dpr; canvas.height = rowsN * cell * dpr;
    var ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    var gap = cell > 5 ? 1 : 0;
    for (var i = 0; i < n; i++) {
      var x = (i % cols) * cell, y = Math.floor(i / cols) * cell;
      ctx.globalAlpha = matches(i) ? 1 : 0.15;
      ctx.fillStyle = COLORS[states[i]];
      ctx.fillRect(x, y, cell - gap, cell - gap);
    }
    ctx.globalAlpha = 1;
  }
  function indexAt(ev) {
    var rect = $("grid").getBoundingClientRect();
    var c = Math.floor((ev.clientX - rect.left) / cell), r = Math.floor((ev.clientY - rect.top) / cell);
    var i = r * cols + c;
    return c >= 0 && c < cols && i >= 0 && i < data.grid.completions ? i : -1;
  }

  // ------------------------------------------------------------------ summary
  function drawSummary() {
    var g = data.grid, counts = $("counts"), reasons = $("reasons");
    counts.textContent = ""; reasons.textContent = "";
    Object.keys(g.counts).forEach(function (s) {
      if (!g.counts[s]) return;
      var c = el("span", { "class": "chip" + (filter && filter.state === s ? " active" : ""), "data-state": s, role: "button" });
      var dot = el("span", { "class": "dot" }); dot.style.background = COLORS[s];
      c.appendChild(dot); c.appendChild(document.createTextNode(LABELS[s]));
      c.appendChild(el("span", { "class": "n" }, g.counts[s]));
      c.onclick = function () { setFilter(filter && filter.state === s ? null : { state: s }); };
      counts.appendChild(c);
    });
    var reasonsInGrid = {};
    g.reason.forEach(function (r) { if (r) reasonsInGrid[r] = (reasonsInGrid[r] || 0) + 1; });
    Object.keys(g.reasons).forEach(function (r) {
      var c = el("span", { "class": "chip" + (filter && filter.reason === r ? " active" : ""), "data-reason": r, role: "button",
                           title: "failed attempts with this reason; click: indexes whose latest failure is " + r });
      c.appendChild(document.createTextNode(r));
      c.appendChild(el("span", { "class": "n" }, g.reasons[r] + " attempts"));
      if (reasonsInGrid[r]) c.onclick = function () { setFilter(filter && filter.reason === r ? null : { reason: r }); };
      reasons.appendChild(c);
    });
    var notes = $("notes"); notes.textContent = "";
    (g.notes || []).forEach(function (t) { notes.appendChild(el("p", { "class": "muted" }, t)); });
    $("ledger").textContent = JSON.stringify(data.ledger, null, 2);
    var js = data.job_status || {};
    $("jobstatus").textContent = js.message || "";
    $("jobstatus").setAttribute("data-state", js.state || "");
    // per Airflow try, from the ledger: still there when the Job and its pods are gone
    var tries = (data.ledger && data.ledger.tries) || [], tbody = document.querySelector("#tries tbody");
    tbody.textContent = "";
    tries.forEach(function (t) {
      var tr = el("tr", { "data-try": t["try"] });
      [t["try"], t.attempts, t.indexes, t.completed, t.failed, t.started, t.ended, t.reason].forEach(function (v) {
        tr.appendChild(el("td", {}, v === null || v === undefined ? "" : v));
      });
      tbody.appendChild(tr);
    });
    $("tries").hidden = !tries.length;
  }
  function setFilter(f) { filter = f; drawSummary(); drawGrid(); $("list").scrollTop = 0; buildItems(); }

  // ------------------------------------------------------------------ one index
  function showIndex(i) {
    var d = $("detail");
    d.textContent = "";
    d.appendChild(el("h2", { id: "detail-title" }, "index " + i + ": " + LABELS[states[i]]));
    d.appendChild(el("p", { "class": "muted" }, "loading attempts…"));
    getJSON("/api/stage/index", { index: i }).then(function (info) {
      d.removeChild(d.lastChild);
      var p = [];
      if (info.reason) p.push("reason " + info.reason);
      if (info["try"]) p.push("completed by Airflow try " + info["try"]);
      if (p.length) d.appendChild(el("p", {}, p.join("; ")));
      if (!info.attempts.length) {
        d.appendChild(el("p", { "class": "muted", id: "no-attempts" }, info.job_exists
          ? "no pod of this index exists (yet)."
          : "the Job and its pods are gone: attempts and logs are no longer in the cluster (the ledger record below still has the stage's outcome)."));
        return;
      }
      var table = el("table", { id: "attempts" });
      var head = el("tr");
      ["pod", "try", "phase", "exit code", "reason", "started", "duration", ""].forEach(function (h) { head.appendChild(el("th", {}, h)); });
      table.appendChild(head);
      info.attempts.forEach(function (a) {
        var tr = el("tr", { "data-pod": a.pod });
        [a.pod, a["try"], a.phase, a.exit_code, a.reason, a.started, fmtSecs(a.duration)].forEach(function (v) {
          tr.appendChild(el("td", {}, v === null || v === undefined ? "" : v));
        });
        var td = el("td"), b = el("button", { "class": "log", "data-pod": a.pod }, "log");
        b.onclick = function () { showLog(a.pod); };
        td.appendChild(b); tr.appendChild(td); table.appendChild(tr);
        if (a.message) { var m = el("tr"); var mt = el("td", { colspan: 8, "class": "muted" }, a.message); m.appendChild(mt); table.appendChild(m); }
      });
      d.appendChild(table);
      d.appendChild(el("div", { id: "log" }));
    }).catch(function (e) { d.appendChild(el("p", { "class": "error" }, String(e.message || e))); });
  }
  function showLog(pod) {
    var box = $("log"); box.textContent = "";
    box.appendChild(el("h3", {}, "log of " + pod + " (last 200 lines)"));
    getJSON("/api/stage/log", { pod: pod, lines: 200 }).then(function (r) {
      if (r.log === null || r.log === undefined) box.appendChild(el("p", { "class": "muted", id: "log-gone" }, r.message));
      else box.appendChild(el("pre", { id: "log-text" }, r.log || "(empty log)"));
    }).catch(function (e) { box.appendChild(el("p", { "class": "error" }, String(e.message || e))); });
  }

  // ------------------------------------------------------------------ load
  function load() {
    getJSON("/api/stage").then(function (body) {
      data = body;
      $("title").textContent = body.dag_id + " / " + body.task_id + (body.map_index >= 0 ? "[" + body.map_index + "]" : "");
      if (!body.kbatch) {
        setStatus(body.message, "muted"); document.body.setAttribute("data-kbatch", "no");
        $("main").hidden = true; return;
      }
      var g = body.grid, codes = {};
      Object.keys(g.codes).forEach(function (s) { codes[g.codes[s]] = s; });
      states = new Array(g.completions);
      for (var i = 0; i < g.completions; i++) states[i] = codes[g.states.charAt(i)];
      $("main").hidden = false;
      drawSummary(); drawGrid(); buildItems();
      var live = g.counts.running + g.counts.pending + g.counts.backoff + g.counts.waiting > 0;
      var gone = body.job_status && body.job_status.state === "garbage_collected";
      document.body.setAttribute("data-job", (body.job_status && body.job_status.state) || "");
      setStatus((gone ? "Job garbage-collected; from the ledger" : "job " + (body.job || "(none)")) + " in " + body.namespace + ", " + g.completions + " indexes, task " +
                body.task_state + ", try " + body.try_number + (live ? "; refreshing every 10 s" : ""));
      if (!document.body.hasAttribute("data-rendered-ms")) {
        document.body.setAttribute("data-rendered-ms", String(Math.round(performance.now() - t0)));
      }
      document.body.setAttribute("data-kbatch", "yes");
      clearTimeout(timer);
      if (live) timer = setTimeout(load, 10000);
    }).catch(function (e) { setStatus(String(e.message || e), "error"); document.body.setAttribute("data-kbatch", "error"); });
  }

  $("list").addEventListener("scroll", function () { window.requestAnimationFrame(renderRows); });
  $("rows").addEventListener("click", function (ev) {
    var r = ev.target.closest(".row"); if (r) showIndex(Number(r.getAttribute("data-from")));
  });
  $("grid").addEventListener("click", function (ev) { var i = indexAt(ev); if (i >= 0) showIndex(i); });
  $("grid").addEventListener("mousemove", function (ev) {
    var i = indexAt(ev);
    $("hover").textContent = i < 0 ? "\u00a0" : "index " + i + ": " + LABELS[states[i]] +
      (data.grid.reason[i] ? ", " + data.grid.reason[i] : "") + (data.grid.attempts[i] ? ", " + data.grid.attempts[i] + " attempt(s)" : "") +
      (data.grid.duration[i] !== null ? ", " + fmtSecs(data.grid.duration[i]) : "");
  });
  $("clear").onclick = function () { setFilter(null); };
  window.addEventListener("resize", function () { if (data && data.grid) drawGrid(); });
  window.kbatchShowIndex = showIndex;
  load();
})();
