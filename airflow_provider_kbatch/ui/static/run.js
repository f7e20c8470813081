// kbatch pipeline view: the run's stages from the run ledger, their lineage (which output fed which
// stage), Airflow's dependencies and the critical path. Plain JS and inline SVG, no build step, no
// library: everything comes from /kbatch/api/run.
"use strict";
(function () {
  var t0 = performance.now();
  var params = new URLSearchParams(location.search);
  var base = location.pathname.replace(/\/view\/[^/]*$/, "");
  var SVG = "http://www.w3.org/2000/svg";
  var COLORS = { succeeded: "#38a169", success: "#38a169", failed: "#e53e3e", upstream_failed: "#dd6b20",
                 running: "#3182ce", pending: "#a0aec0", queued: "#a0aec0", scheduled: "#a0aec0",
                 deferred: "#805ad5", skipped: "#b7791f" };
  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function fmt(s) {
    if (s === null || s === undefined) return "";
    if (s < 60) return s.toFixed(1) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
    return (s / 3600).toFixed(1) + " h";
  }
  function short(digest) { return digest ? digest.replace(/^sha256:/, "").slice(0, 12) : ""; }
  function setStatus(text, cls) { var s = $("status"); s.textContent = text; s.className = cls || "muted"; }

  // ------------------------------------------------------------------ the layered graph (SVG)
  function drawGraph(graph) {
    var box = $("graph"), W = 170, H = 46, GX = 70, GY = 18;
    box.textContent = "";
    var columns = {};
    graph.nodes.forEach(function (n) { (columns[n.layer] = columns[n.layer] || []).push(n); });
    var pos = {}, rows = 0, layers = Object.keys(columns).map(Number).sort(function (a, b) { return a - b; });
    layers.forEach(function (layer) {
      columns[layer].forEach(function (n, k) { pos[n.id] = { x: 10 + layer * (W + GX), y: 10 + k * (H + GY) }; });
      rows = Math.max(rows, columns[layer].length);
    });
    box.setAttribute("width", String(20 + layers.length * (W + GX) - GX));
    box.setAttribute("height", String(20 + rows * (H + GY) - GY));
    var defs = svg("defs");
    ["plain", "critical"].forEach(function (kind) {
      var m = svg("marker", { id: "arrow-" + kind, viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "9", markerUnits: "userSpaceOnUse",
                              markerHeight: "9", orient: "auto-start-reverse" });
      m.appendChild(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: kind === "critical" ? "#c53030" : "#718096" }));
      defs.appendChild(m);
    });
    box.appendChild(defs);
    graph.edges.forEach(function (e) {
      var a = pos[e.from], b = pos[e.to];
      if (!a || !b) return;
      var x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mid = (x1 + x2) / 2;
      var path = svg("path", {
        "class": "edge " + e.kind + (e.critical ? " critical" : ""), "data-from": e.from, "data-to": e.to,
        "data-kind": e.kind, "data-critical": e.critical ? "true" : "false",
        d: "M " + x1 + " " + y1 + " C " + mid + " " + y1 + ", " + mid + " " + y2 + ", " + x2 + " " + y2,
        "marker-end": "url(#arrow-" + (e.critical ? "critical" : "plain") + ")"
      });
      path.appendChild(svg("title", {}, e.from + " \u2192 " + e.to + (e.input ? ": " + e.input + " " + short(e.digest) +
        " (" + e.freshness + ")" : " (Airflow dependency)")));
      box.appendChild(path);
    });
    var critical = {};
    graph.critical_path.nodes.forEach(function (id) { critical[id] = true; });
    graph.nodes.forEach(function (n) {
      var p = pos[n.id], g = svg("g", { "class": "node" + (critical[n.id] ? " critical" : "") + (n.kbatch ? "" : " other"),
                                        "data-id": n.id, "data-critical": critical[n.id] ? "true" : "false",
                                        transform: "translate(" + p.x + "," + p.y + ")" });
      g.appendChild(svg("rect", { width: W, height: H, rx: 5, ry: 5 }));
      g.appendChild(svg("rect", { "class": "state", width: 6, height: H, rx: 2, fill: COLORS[n.state] || "#cbd5e0" }));
      g.appendChild(svg("text", { x: 12, y: 18, "class": "name" }, n.id.length > 22 ? n.id.slice(0, 21) + "\u2026" : n.id));
      var t = n.timings || {};
      g.appendChild(svg("text", { x: 12, y: 36, "class": "sub" },
        (n.state || "no state") + (t.total !== null && t.total !== undefined ? " \u00b7 " + fmt(t.total) : "")));
      g.appendChild(svg("title", {}, n.id + ": " + (n.state || "") + "; queue " + fmt(t.queue) + ", run " + fmt(t.run) +
        (n.tries.length ? "; tries " + n.tries.join(", ") + ", " + n.attempts + " attempt(s)" : "")));
      box.appendChild(g);
    });
  }

  // ------------------------------------------------------------------ tables
  function triesText(led) {
    return (led.tries || []).map(function (t) {
      return "try " + t["try"] + ": " + t.attempts + " (" + t.completed + "/" + t.indexes + " done" +
        (t.failed ? ", " + t.failed + " failed" : "") + (t.reason ? ", " + t.reason : "") + ")";
    }).join("; ");
  }
  function drawStages(body) {
    var tbody = document.querySelector("#stages tbody");
    tbody.textContent = "";
    body.stages.forEach(function (s) {
      var led = s.ledger || {}, out = led.output || {}, t = s.timings || {}, job = s.job || {};
      var tr = el("tr", { "data-id": s.id, "data-critical": s.critical ? "true" : "false", "data-job": job.state || "",
                          "class": s.critical ? "critical" : "" });
      var inputs = Object.keys(led.inputs || {}).map(function (n) { return n + " \u2190 " + led.inputs[n].stage; }).join(", ");
      var cells = [s.id, led.state || s.task_state || "", job.message || "", triesText(led),
                   (led.completed ? "done " + led.completed : "") + (led.failed ? " failed " + led.failed : ""),
                   fmt(t.queue), fmt(t.run), fmt(t.total), out.name || "",
                   out.bytes === undefined || out.bytes === null ? "" : out.bytes,
                   out.records === undefined || out.records === null ? "" : out.records,
                   out.contract ? out.contract.name + " v" + out.contract.version : "", inputs];
      cells.forEach(function (v, k) {
        var td = el("td", { "class": ["id", "state", "job", "tries", "indexes", "queue", "run", "total", "output", "bytes",
                                      "records", "contract", "inputs"][k] }, v);
        if (k === 5 && t.queue !== null && t.queue !== undefined) {
          td.title = "Airflow queue " + fmt(t.airflow_queue) + " + Job suspended " + fmt(t.job_queue);
        }
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
  }
  function drawEdges(graph) {
    var tbody = document.querySelector("#edges tbody");
    tbody.textContent = "";
    graph.edges.forEach(function (e) {
      var tr = el("tr", { "data-from": e.from, "data-to": e.to, "data-kind": e.kind, "class": e.critical ? "critical" : "" });
      [e.from, e.to, e.kind === "data" ? "data" : "Airflow dependency", e.input || "", short(e.digest),
       e.freshness || ""].forEach(function (v) { tr.appendChild(el("td", {}, v)); });
      tbody.appendChild(tr);
    });
    if (!graph.edges.length) {
      var tr = el("tr"); tr.appendChild(el("td", { colspan: 6, "class": "muted" }, "no edges: no stage recorded an input and the DAG has no dependencies"));
      tbody.appendChild(tr);
    }
  }

  var p = new URLSearchParams({ dag_id: params.get("dag_id") || "", run_id: params.get("run_id") || "" });
  fetch(base + "/api/run?" + p, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (r) {
    if (!r.ok) throw new Error(r.status === 401 || r.status === 403 ? "not allowed to see this DAG (" + r.status + ")" : "HTTP " + r.status);
    return r.json();
  }).then(function (body) {
    $("title").textContent = "kbatch pipeline: " + body.dag_id + " / " + body.run_id;
    if (!body.stages.length) {
      setStatus("this run has no kbatch stages.");
      document.body.setAttribute("data-kbatch", "no");
      return;
    }
    var gone = body.stages.filter(function (s) { return s.job && s.job.state === "garbage_collected"; }).length;
    setStatus(body.stages.length + " kbatch stage(s) in " + body.namespaces.join(", ") + ", from the run ledger" +
              (gone ? " (" + gone + " Job(s) garbage-collected: their rows come from the ledger)" : "") +
              (body.dependencies === "serialized_dag" ? "" : "; Airflow's dependencies unavailable (no serialized DAG)") +
              "; read in " + body.read_ms + " ms");
    var cp = body.critical_path;
    $("critical").textContent = cp.nodes.length
      ? "critical path: " + cp.nodes.join(" \u2192 ") + ", " + fmt(cp.seconds) + " (queue wait + run)" + (cp.tied ? "; another path took as long" : "")
      : "no critical path yet: no stage has run";
    $("main").hidden = false;
    drawGraph(body.graph); drawStages(body); drawEdges(body.graph);
    $("json").textContent = JSON.stringify(body, null, 2);
    document.body.setAttribute("data-rendered-ms", String(Math.round(performance.now() - t0)));
    document.body.setAttribute("data-kbatch", "yes");
  }).catch(function (e) {
    setStatus(String(e.message || e), "error");
    document.body.setAttribute("data-kbatch", "error");
  });
})();
