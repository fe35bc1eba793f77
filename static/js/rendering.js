// Live render progress on the round page: polls the staff-only JSON endpoint while renders are
// queued or running, updates the counts and the failure list, reloads when the round's status
// changes (so the action buttons match). No build step, no dependencies.
(function () {
  "use strict";
  var box = document.getElementById("rendering");
  if (!box) return;
  var url = box.dataset.progressUrl;
  var status = box.dataset.roundStatus;
  var active = box.dataset.active === "1";
  var delay = 2000;

  function set(id, value) {
    var el = document.getElementById(id);
    if (el) el.textContent = String(value);
  }

  function cell(row, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
  }

  function show(p) {
    set("render-done", p.done);
    set("render-total", p.total);
    set("render-failed", p.failed);
    set("render-pending", p.pending);
    set("render-queued", p.queued);
    set("render-running", p.running);
    set("render-cancelled", p.cancelled);
    set("render-not-launched", p.not_launched);
    set("render-retry-count", p.failed);
    var retry = document.getElementById("render-retry");
    if (retry) retry.hidden = !p.failed;
    set("render-stalled", p.stalled);
    document.getElementById("render-stalled-box").hidden = !p.stalled;
    document.getElementById("render-bar").value = p.percent;
    var body = document.getElementById("render-failures-body");
    body.textContent = "";
    p.failures.forEach(function (f) {
      var tr = document.createElement("tr");
      cell(tr, f.objective);
      cell(tr, f.seed);
      cell(tr, f.prompt.length > 80 ? f.prompt.slice(0, 79) + "…" : f.prompt);
      cell(tr, f.attempts, "num");
      cell(tr, f.error, "err");
      body.appendChild(tr);
    });
    document.getElementById("render-failures").hidden = p.failures.length === 0;
    set("render-live", p.active ? "updating live…" : "");
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (resp) {
        if (!resp.ok) throw new Error("HTTP " + resp.status);
        return resp.json();
      })
      .then(function (p) {
        show(p);
        delay = 2000;
        if (p.round_status !== status) {
          window.location.reload();
          return;
        }
        if (p.active) window.setTimeout(poll, delay);
      })
      .catch(function (err) {
        set("render-live", "progress unavailable (" + err.message + "); retrying");
        delay = Math.min(delay * 2, 30000);
        window.setTimeout(poll, delay);
      });
  }

  if (active || status === "rendering") window.setTimeout(poll, delay);
})();
