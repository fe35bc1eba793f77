/* The annotator pages, enhanced. The trial page: keys, minimum viewing time, zoom, undo, answers
 * over the JSON API; every new trial starts at the top of the page, its text in view. The done
 * page: a button that copies the completion code. Without this script the trial page is a plain
 * form that posts and reloads, and the code can be selected by hand.
 *
 * Keys: Q/W/E = photograph question left / can't decide / right; A/S/D = text question the same;
 * Enter = submit (or continue after practice feedback); U = change the previous answer;
 * Z = zoom left, then right, then close; Esc = close the zoom.
 */
(function () {
  "use strict";
  var copyBtn = document.getElementById("copy-code");
  if (copyBtn) {
    var status = document.getElementById("copy-status");
    copyBtn.hidden = false;
    copyBtn.addEventListener("click", function () {
      var text = document.getElementById(copyBtn.dataset.copyTarget).textContent.trim();
      function done(ok) { status.textContent = ok ? "Copied." : "Could not copy: please select the code and copy it."; }
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(function () { done(true); }, function () { done(false); });
        return;
      }
      // Plain HTTP (no Clipboard API): select the code so that one Ctrl+C / long press copies it.
      var range = document.createRange();
      range.selectNodeContents(document.getElementById(copyBtn.dataset.copyTarget));
      var sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      done(ok);
    });
  }
})();

(function () {
  "use strict";
  var form = document.getElementById("trial-form");
  if (!form || !window.fetch || !window.FormData) return;

  var $ = function (id) { return document.getElementById(id); };
  var imgs = { left: $("img-left"), right: $("img-right") };
  var submitBtn = $("submit"), undoBtn = $("undo"), waitMsg = $("wait"), errorBox = $("error");
  var feedback = $("feedback"), lightbox = $("lightbox"), lightboxImg = $("lightbox-img");
  var minView = parseInt(form.dataset.minView, 10) || 0;
  var KEYS = {
    q: ["realism", "left"], w: ["realism", "tie"], e: ["realism", "right"],
    a: ["alignment", "left"], s: ["alignment", "tie"], d: ["alignment", "right"]
  };
  var state = { loadedAt: null, unlocked: false, busy: false, times: {}, pending: null, zoom: null, generation: 0 };

  function radios() { return form.querySelectorAll("input[type=radio]"); }

  function setLocked(locked) {
    state.unlocked = !locked;
    radios().forEach(function (r) { r.disabled = locked; });
    submitBtn.disabled = locked;
    form.classList.toggle("locked", locked);
  }

  function showError(msg) {
    errorBox.textContent = msg || "";
    errorBox.hidden = !msg;
  }

  function startClock() {
    // Answers unlock min_view_ms after both images have loaded; response times count from then.
    var gen = ++state.generation;
    state.loadedAt = null;
    state.times = {};
    setLocked(true);
    var left = 2;
    function loaded() {
      if (gen !== state.generation) return;
      left -= 1;
      if (left > 0) return;
      state.loadedAt = performance.now();
      window.setTimeout(function () {
        if (gen !== state.generation) return;
        setLocked(false);
        waitMsg.hidden = true;
      }, minView);
    }
    ["left", "right"].forEach(function (side) {
      var img = imgs[side];
      if (img.complete && img.naturalWidth > 0) { loaded(); return; }
      img.onload = loaded;
      img.onerror = function () { showError("An image did not load. Please reload the page."); };
    });
  }

  function showTrial(t) {
    form.elements.position.value = t.position;
    form.elements.revise.value = t.revising ? "1" : "";
    $("prompt").textContent = t.prompt;
    $("phase-label").textContent = t.phase === "practice" ? "Practice" : "Comparison";
    if (t.number) {
      $("progress").value = t.number;
      $("progress").max = t.total;
      $("progress-text").textContent = t.number + " / " + t.total;
      document.title = (t.phase === "practice" ? "Practice " : "Comparison ") + t.number + " of " + t.total;
    }
    $("revising").hidden = !t.revising;
    radios().forEach(function (r) { r.checked = t.answers[r.name] === r.value; });
    undoBtn.hidden = t.revising || t.phase === "practice";
    showError("");
    state.generation += 1;  // ignore load events of the previous images
    imgs.left.src = t.left;
    imgs.right.src = t.right;
    // A new trial starts at the top: its text and first image in view (the Submit button the
    // person just used may be below the fold).
    window.scrollTo(0, 0);
    startClock();
  }

  function applyReply(data) {
    if (data.trial) { showTrial(data.trial); return; }
    if (data.done_url) { window.location.assign(data.done_url); return; }
    showError(data.next_error || "Something went wrong. Please reload the page.");
  }

  function request(url, options) {
    return fetch(url, Object.assign({ credentials: "same-origin", headers: { "X-Requested-With": "fetch" } }, options || {}))
      .then(function (resp) {
        return resp.json().catch(function () {
          return { ok: false, message: "Something went wrong (" + resp.status + "). Please reload the page." };
        });
      }, function () {
        return { ok: false, message: "No connection. Check your network and press Enter to try again." };
      });
  }

  function submitAnswer() {
    if (state.busy) return;
    if (!state.unlocked) { waitMsg.hidden = false; return; }
    var answered = ["realism", "alignment"].every(function (c) { return form.querySelector("input[name=" + c + "]:checked"); });
    if (!answered) { showError("Please answer both questions."); return; }
    ["realism", "alignment"].forEach(function (c) {
      form.elements["rt_" + c].value = state.times[c] !== undefined ? state.times[c] : "";
    });
    state.busy = true;
    request(form.dataset.apiAnswer + "?next=1", { method: "POST", body: new FormData(form) }).then(function (data) {
      state.busy = false;
      if (!data.ok) {
        // Expired, or already answered in another tab: say so and move on to the current trial.
        if (data.error === "trial_expired" || data.error === "already_answered") { loadNext(data.message); return; }
        showError(data.message);
        return;
      }
      if (data.feedback) {
        state.pending = data;
        showFeedbackText(data.feedback);
        feedback.className = "feedback " + (data.feedback.correct ? "ok" : "bad");
        feedback.hidden = false;
        setLocked(true);
        $("feedback-continue").focus({ preventScroll: true });
        feedback.scrollIntoView({ block: "nearest" });
        return;
      }
      applyReply(data);
    });
  }

  function showFeedbackText(fb) {
    // "Correct! The left image ..." on a laptop, "... The top image ..." on a phone.
    var box = $("feedback-text");
    var names = fb.expected === "left" ? ["left", "top"] : ["right", "bottom"];
    box.textContent = fb.verdict + " The ";
    [["wide", names[0]], ["narrow-only", names[1]]].forEach(function (pair) {
      var span = document.createElement("span");
      span.className = pair[0];
      span.textContent = pair[1];
      box.appendChild(span);
    });
    box.appendChild(document.createTextNode(" image was the clear answer: " + fb.why));
  }

  function continueAfterFeedback() {
    var data = state.pending;
    state.pending = null;
    feedback.hidden = true;
    applyReply(data);
  }

  function loadNext(message) {
    request(form.dataset.apiNext).then(function (data) {
      if (!data.ok) { showError(data.message); return; }
      applyReply(data);
      if (message) showError(message);
    });
  }

  function undo() {
    if (state.busy || state.pending) return;
    state.busy = true;
    request(form.dataset.apiUndo).then(function (data) {
      state.busy = false;
      if (!data.ok) { showError(data.message); return; }
      showTrial(data.trial);
    });
  }

  function zoom(side) {
    state.zoom = side;
    if (!side) { lightbox.hidden = true; lightboxImg.removeAttribute("src"); return; }
    lightboxImg.src = imgs[side].src;
    // A phone stacks the images: there they are the top and the bottom one (annotate.css).
    var stacked = window.matchMedia("(max-width: 700px)").matches;
    var name = side === "left" ? (stacked ? "Top" : "Left") : (stacked ? "Bottom" : "Right");
    lightboxImg.alt = name + " image, enlarged";
    $("lightbox-side").textContent = name + " image";
    lightbox.hidden = false;
  }

  function choose(criterion, value) {
    if (!state.unlocked) { waitMsg.hidden = false; return; }
    var input = form.querySelector("input[name=" + criterion + "][value=" + value + "]");
    input.checked = true;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  }

  form.addEventListener("change", function (ev) {
    var t = ev.target;
    if (t.type === "radio" && state.loadedAt !== null) {
      state.times[t.name] = Math.max(0, Math.round(performance.now() - state.loadedAt));
      showError("");
    }
  });
  form.addEventListener("submit", function (ev) { ev.preventDefault(); submitAnswer(); });
  $("feedback-continue").addEventListener("click", continueAfterFeedback);
  undoBtn.addEventListener("click", undo);
  form.querySelectorAll("a.zoom").forEach(function (a) {
    a.addEventListener("click", function (ev) { ev.preventDefault(); zoom(a.dataset.side); });
  });
  lightbox.addEventListener("click", function () { zoom(null); });

  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var key = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
    if (state.zoom) {
      if (key === "Escape") { zoom(null); ev.preventDefault(); }
      else if (key === "z") { zoom(state.zoom === "left" ? "right" : null); ev.preventDefault(); }
      return;
    }
    if (key === "z") { zoom("left"); ev.preventDefault(); return; }
    if (state.pending) {
      if (key === "Enter") { ev.preventDefault(); continueAfterFeedback(); }
      return;
    }
    if (key === "Enter") { ev.preventDefault(); submitAnswer(); return; }
    if (key === "u") { ev.preventDefault(); undo(); return; }
    if (KEYS[key]) { ev.preventDefault(); choose(KEYS[key][0], KEYS[key][1]); }
  });

  undoBtn.hidden = document.getElementById("phase-label").textContent === "Practice";
  startClock();
})();
