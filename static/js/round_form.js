// The new-round form's live estimate: sends the form's current values to the staff-only JSON
// endpoint (research:round_estimate) and shows renders, render time, items, votes, annotators
// and the planner's verdict. No inline script (the pages run under a Content-Security-Policy),
// no dependencies; the form works the same without it.
(function () {
  "use strict";
  var form = document.getElementById("round-form");
  if (!form || !window.fetch) return;
  var url = form.dataset.estimateUrl;
  var timer = null;
  var seq = 0;

  function el(id) { return document.getElementById(id); }
  function set(id, text) { el(id).textContent = text; }
  function fmt(n) { return Number(n).toLocaleString("en-US"); }

  function duration(s) {
    if (s < 90) return Math.round(s) + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    if (s < 172800) return (s / 3600).toFixed(1) + " h";
    return (s / 86400).toFixed(1) + " days";
  }

  function show(e) {
    var status = el("estimate-status");
    var list = el("estimate-list");
    var plan = el("est-plan");
    var weights = el("est-weights");
    if (!e.ok) {
      list.hidden = true;
      plan.hidden = true;
      weights.hidden = true;
      status.textContent = "Still needed for the estimate: " + (e.missing || []).join(", ") + ".";
      return;
    }
    status.textContent = "";
    list.hidden = false;
    set("est-prompts", fmt(e.prompts));
    set("est-renders", fmt(e.renders) + " images");
    var unit = e.device === "cpu" ? "CPU" : "GPU";
    set("est-time", e.seconds_per_image === null
      ? "not measured for this preset"
      : "about " + duration(e.compute_seconds) + " of " + unit + " time (" + e.seconds_per_image + " s per image)");
    set("est-items", fmt(e.items));
    set("est-votes", fmt(e.votes) + " (" + fmt(e.votes_per_cell) + " per comparison and criterion, " + e.cells + " cells)");
    set("est-annotators", e.regular_trials_per_annotator
      ? fmt(e.annotators) + " at " + e.regular_trials_per_annotator + " regular trials each"
      : "none: every trial is an attention check");
    plan.hidden = false;
    plan.textContent = e.plan.message;
    plan.className = "plan " + (e.plan.ok ? (e.plan.enough ? "plan-ok" : "plan-short") : "plan-none");
    weights.hidden = !(e.missing_weights && e.missing_weights.length);
    weights.textContent = weights.hidden ? "" :
      "This preset needs " + e.missing_weights.join(", ") + ", missing here: renders fail unless a GPU worker has them.";
  }

  function update() {
    var data = new FormData(form);
    data.delete("csrfmiddlewaretoken");
    data.delete("consent_text");
    data.delete("generation");
    var params = new URLSearchParams(data);
    var mine = ++seq;
    fetch(url + "?" + params.toString(), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (resp) {
        if (!resp.ok) throw new Error("HTTP " + resp.status);
        return resp.json();
      })
      .then(function (e) { if (mine === seq) show(e); })
      .catch(function (err) {
        if (mine === seq) set("estimate-status", "Estimate unavailable (" + err.message + ").");
      });
  }

  function later() {
    window.clearTimeout(timer);
    timer = window.setTimeout(update, 250);
  }

  form.addEventListener("input", later);
  form.addEventListener("change", later);
  update();
})();
