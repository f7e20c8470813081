// kbatch pipeline view: the run's stages from the run ledger. Plain JS, no build step.
"use strict";
(function () {
  var params = new URLSearchParams(location.search);
  var base = location.pathname.replace(/\/view\/[^/]*$/, "");
  function $(id) { return document.getElementById(id); }
  function secs(a, b) {
    if (!a || !b) return null;
    return (Date.parse(b) - Date.parse(a)) / 1000;
  }
  function fmt(s) { return s === null ? "" : s < 60 ? s.toFixed(1) + " s" : Math.round(s / 60) + " min"; }
  function when(record, state) {
    var found = null;
    (record.transitions || []).forEach(function (t) { if (t[0] === state && !found) found = t[1]; });
    return found;
  }
  var p = new URLSearchParams({ dag_id: params.get("dag_id") || "", run_id: params.get("run_id") || "" });
  fetch(base + "/api/run?" + p, { credentials: "same-origin" }).then(function (r) {
    if (!r.ok) throw new Error(r.status === 401 || r.status === 403 ? "not allowed to see this DAG (" + r.status + ")" : "HTTP " + r.status);
    return r.json();
  }).then(function (body) {
    $("title").textContent = "kbatch pipeline: " + body.dag_id + " / " + body.run_id;
    if (!body.stages.length) { $("status").textContent = "this run has no kbatch stages."; return; }
    $("status").textContent = body.stages.length + " kbatch stage(s), from the run ledger";
    var tbody = document.querySelector("#stages tbody");
    body.stages.forEach(function (s) {
      var led = s.ledger || {}, out = led.output || {}, tr = document.createElement("tr");
      var first = (led.attempts || [])[0] || {}, last = (led.attempts || []).slice(-1)[0] || {};
      var queued = secs(when(led, "pending"), first.started || when(led, "running"));
      var ran = secs(first.started, last.ended);
      var cells = [s.task_id + (s.map_index >= 0 ? "[" + s.map_index + "]" : ""), led.state || s.task_state || "",
                   (led.completed || "") + (led.failed ? " failed " + led.failed : ""), (led.attempts || []).length,
                   fmt(queued), fmt(ran), out.name || "", out.bytes === undefined ? "" : out.bytes,
                   out.records === undefined ? "" : out.records,
                   out.contract ? out.contract.name + " v" + out.contract.version : ""];
      cells.forEach(function (v) { var td = document.createElement("td"); td.textContent = v === null ? "" : String(v); tr.appendChild(td); });
      tbody.appendChild(tr);
    });
    $("main").hidden = false;
  }).catch(function (e) { $("status").textContent = String(e.message || e); $("status").className = "error"; });
})();
