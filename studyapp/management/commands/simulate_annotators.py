"""Run a panel of simulated annotators through the real HTTP annotator flow of an open round.

Each simulated annotator is a browser without JavaScript plus a cookie jar: it opens the study
link, consents, passes the comprehension check, then takes trials from ``/a/<token>/api/next``,
downloads both images like the trial page does, looks at them with the toy world's oracle and
answers through ``/a/<token>/api/answer``. Nothing but HTTP reaches the server, so this is both
a realistic load generator and an end-to-end check of allocation, blinding and statistics.
All simulated annotators come from one address: start the server with a higher
``ANNOTATE_CREATE_LIMIT`` (e.g. ``1000/600``) than the default 10 per 10 minutes.

How a simulated annotator chooses (per trial, per criterion):

- utilities: text match = the oracle's alignment probability of the image for the prompt;
  photo-realism = the oracle's realism proxy (``Oracle.realism``: a confident reading of some object);
- ``u_left = score_left + side_bias + noise*z``, ``u_right = score_right + noise*z'`` (z standard
  normal, drawn per annotator from its own seeded generator); the higher side wins, and a
  difference under ``--tie-band`` is answered "can't decide";
- with probability ``--lapse`` the whole trial is an attention lapse: both answers uniformly
  left/right, whatever the images show.

``--plant OBJECTIVE=P`` (validation only) plants a known preference: on the chosen criterion
(``--plant-criterion``), when a trial shows OBJECTIVE, the annotator picks it with probability
P before looking at the images. This reads the server's *unblinded* record of which render is on
which side (a database lookup by the trial's image tokens), which no real annotator can do; the
statistics should then recover a preference of about ``P + (1 - P) * base`` for OBJECTIVE.
"""

from __future__ import annotations

import http.cookiejar
import io
import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from django.core.management.base import BaseCommand, CommandError

_CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken"\s+value="([^"]+)"')


@dataclass(frozen=True)
class Behaviour:
    noise: float = 0.2
    side_bias: float = 0.05
    lapse: float = 0.05
    tie_band: float = 0.02
    planted: str | None = None  # objective
    plant_p: float = 0.0
    plant_criterion: str = "alignment"
    respect_min_view: bool = True


@dataclass
class Outcome:
    index: int
    status: str = "new"
    trials: int = 0
    practice: int = 0
    choices: dict = field(default_factory=lambda: {"realism": {}, "alignment": {}})
    error: str = ""


class HttpError(RuntimeError):
    pass


class Browser:
    """urllib with a cookie jar and Django's CSRF handling (form field for pages, header for the API)."""

    def __init__(self, base_url: str, timeout: float = 60.0):
        self.base = base_url.rstrip("/")
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.timeout = timeout

    def _csrf_cookie(self) -> str:
        for c in self.jar:
            if c.name == "csrftoken":
                return c.value
        return ""

    def request(self, path: str, data: dict | None = None, *, expect=(200,)) -> tuple[int, bytes, str]:
        url = path if path.startswith("http") else self.base + path
        body = None
        headers = {"User-Agent": "toyworld-simulated-annotator/1", "Referer": self.base + "/"}
        if data is not None:
            body = urllib.parse.urlencode(data).encode()
            headers["X-CSRFToken"] = self._csrf_cookie()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        req = urllib.request.Request(url, data=body, headers=headers)
        try:
            with self.opener.open(req, timeout=self.timeout) as resp:
                status, payload, final = resp.status, resp.read(), resp.geturl()
        except urllib.error.HTTPError as exc:
            status, payload, final = exc.code, exc.read(), url
        if status not in expect:
            raise HttpError(f"{'POST' if data is not None else 'GET'} {url} -> {status}: {payload[:300]!r}")
        return status, payload, final

    def page_form(self, path: str, fields: dict) -> tuple[int, bytes, str]:
        """GET a page, then POST ``fields`` to ``path`` with the page's CSRF token."""
        _, html, _ = self.request(path)
        m = _CSRF_INPUT.search(html.decode("utf-8", "replace"))
        token = m.group(1) if m else self._csrf_cookie()
        return self.request(path, {**fields, "csrfmiddlewaretoken": token})

    def json(self, path: str, data: dict | None = None) -> dict:
        _, payload, _ = self.request(path, data, expect=(200, 400, 403, 404, 409))
        return json.loads(payload)


def _decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


class Panel:
    """Shared state of one simulation: the oracle (thread-safe for inference) and settings."""

    def __init__(self, *, base_url: str, token: str, round_id: int, behaviour: Behaviour, seed: int, comprehension):
        from generation.toyworld.oracle import load_oracle

        self.base_url, self.token, self.round_id = base_url, token, round_id
        self.b, self.seed, self.comprehension = behaviour, seed, comprehension
        self.oracle = load_oracle()
        self._lock = threading.Lock()

    def scores(self, left: np.ndarray, right: np.ndarray, prompt: str) -> dict[str, tuple[float, float]]:
        images = np.stack([left, right])
        with self._lock:  # one forward at a time keeps CPU threads from oversubscribing
            reading = self.oracle.read(images)
        try:
            align = self.oracle.alignment(None, prompt, reading=reading)
        except ValueError:  # a prompt outside the toy grammar: no opinion on the text
            align = np.array([0.5, 0.5])
        conf = self.oracle.realism(None, reading=reading)
        return {"alignment": (float(align[0]), float(align[1])), "realism": (float(conf[0]), float(conf[1]))}

    def planted_side(self, left_url: str, right_url: str) -> str | None:
        """Which side shows the planted objective, from the server's unblinded record (validation only)."""
        from studyapp.models import Trial

        lt, rt = left_url.rstrip("/").rsplit("/", 1)[-1], right_url.rstrip("/").rsplit("/", 1)[-1]
        t = Trial.objects.select_related("left_render", "right_render").filter(left_token=lt, right_token=rt).first()
        if t is None:
            return None
        if t.left_render.objective == self.b.planted and t.left_variant == "plain":
            return "left"
        if t.right_render.objective == self.b.planted and t.right_variant == "plain":
            return "right"
        return None

    def choose(self, rng: np.random.Generator, scores: dict, planted_side: str | None) -> dict[str, str]:
        b = self.b
        if rng.random() < b.lapse:
            return {c: ("left", "right")[int(rng.integers(2))] for c in ("realism", "alignment")}
        out = {}
        for crit in ("realism", "alignment"):
            if planted_side and crit == b.plant_criterion and rng.random() < b.plant_p:
                out[crit] = planted_side
                continue
            sl, sr = scores[crit]
            ul = sl + b.side_bias + b.noise * rng.standard_normal()
            ur = sr + b.noise * rng.standard_normal()
            out[crit] = "tie" if abs(ul - ur) < b.tie_band else ("left" if ul > ur else "right")
        return out

    def run_one(self, index: int) -> Outcome:
        rng = np.random.default_rng([self.seed, index])
        out = Outcome(index)
        br = Browser(self.base_url)
        base = f"/a/{self.token}"
        _, html, _ = br.request(f"{base}/")  # the consent page (sets the CSRF cookie)
        m = _CSRF_INPUT.search(html.decode("utf-8", "replace"))
        _, _, where = br.request(f"{base}/consent/", {"consent": "yes", "csrfmiddlewaretoken": m.group(1) if m else ""})
        out.status = "consented"
        if "/check/" in where or "/instructions/" in where:
            answers = {name: correct for name, _q, _opts, correct in self.comprehension}
            _, _, where = br.page_form(f"{base}/check/", answers)
        if "/trial/" not in where:
            out.status = f"not admitted ({where})"
            return out
        out.status = "active"
        reply = br.json(f"{base}/api/next")
        while True:
            if not reply.get("ok"):
                out.error = f"{reply.get('error')}: {reply.get('message')}"
                break
            trial = reply.get("trial")
            if trial is None:
                out.status = "completed"
                break
            t_served = time.monotonic()
            left = _decode_png(br.request(trial["left"])[1])
            right = _decode_png(br.request(trial["right"])[1])
            scores = self.scores(left, right, trial["prompt"])
            planted = self.planted_side(trial["left"], trial["right"]) if self.b.planted else None
            choice = self.choose(rng, scores, planted)
            rt = int(max(trial.get("min_view_ms") or 0, 1000 * rng.lognormal(np.log(3.0), 0.4)))
            if self.b.respect_min_view and trial.get("min_view_ms"):
                wait = trial["min_view_ms"] / 1000 + 0.05 - (time.monotonic() - t_served)
                if wait > 0:
                    time.sleep(wait)
            fields = {"position": trial["position"], "realism": choice["realism"], "alignment": choice["alignment"],
                      "rt_realism": rt, "rt_alignment": rt + int(rng.integers(200, 1500))}
            reply = br.json(f"{base}/api/answer?next=1", fields)
            if not reply.get("ok"):
                out.error = f"{reply.get('error')}: {reply.get('message')}"
                break
            if trial.get("phase") == "practice":
                out.practice += 1
            else:
                out.trials += 1
                for crit in ("realism", "alignment"):
                    out.choices[crit][choice[crit]] = out.choices[crit].get(choice[crit], 0) + 1
            if "trial" not in reply:  # no next trial in the reply: ask for it
                reply = br.json(f"{base}/api/next")
        return out


class Command(BaseCommand):
    help = "Run simulated annotators (oracle-driven, noisy) through an open round's HTTP annotator flow."

    def add_arguments(self, parser):
        parser.add_argument("round", type=int, help="id of an OPEN round")
        parser.add_argument("--n", type=int, default=20, help="number of simulated annotators")
        parser.add_argument("--noise", type=float, default=0.2, help="sd of the Gaussian noise on each image's utility")
        parser.add_argument("--side-bias", type=float, default=0.05, help="utility bonus of the left image")
        parser.add_argument("--lapse", type=float, default=0.05, help="probability that a trial is answered at random")
        parser.add_argument("--tie-band", type=float, default=0.02, help="utility difference answered \"can't decide\"")
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="where the platform is served")
        parser.add_argument("--concurrency", type=int, default=4, help="annotators at the same time")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--plant", default="", help="OBJECTIVE=P: validation only, see the module docstring")
        parser.add_argument("--plant-criterion", default="alignment", choices=("alignment", "realism"))
        parser.add_argument("--no-wait", action="store_true", help="answer without waiting the round's minimum viewing time")

    def handle(self, round, n, noise, side_bias, lapse, tie_band, base_url, concurrency, seed, plant, plant_criterion,
               no_wait, **options):
        from studyapp.models import StudyRound
        from studyapp.services.annotators import COMPREHENSION

        rnd = StudyRound.objects.filter(pk=round).first()
        if rnd is None:
            raise CommandError(f"no round with id {round}")
        if rnd.status != StudyRound.Status.OPEN:
            raise CommandError(f"round {round} is {rnd.status}; open it first (simulated annotators need an open round)")
        for name, v in (("--noise", noise), ("--tie-band", tie_band)):
            if v < 0:
                raise CommandError(f"{name} must be >= 0, got {v}")
        for name, v in (("--lapse", lapse),):
            if not 0 <= v <= 1:
                raise CommandError(f"{name} must be in [0, 1], got {v}")
        planted, plant_p = None, 0.0
        if plant:
            try:
                planted, p = plant.split("=")
                plant_p = float(p)
            except ValueError:
                raise CommandError(f"--plant must look like SHIFT=0.6, got {plant!r}") from None
            if not 0 <= plant_p <= 1:
                raise CommandError(f"--plant probability must be in [0, 1], got {plant_p}")
        behaviour = Behaviour(noise, side_bias, lapse, tie_band, planted, plant_p, plant_criterion, not no_wait)
        import torch

        torch.set_num_threads(1)
        panel = Panel(base_url=base_url, token=rnd.token, round_id=rnd.pk, behaviour=behaviour, seed=seed,
                      comprehension=COMPREHENSION)
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            outcomes = list(pool.map(self._safe(panel), range(n)))
        dt = time.monotonic() - t0
        done = sum(o.status == "completed" for o in outcomes)
        trials = sum(o.trials for o in outcomes)
        totals = {c: {} for c in ("realism", "alignment")}
        for o in outcomes:
            for c in totals:
                for k, v in o.choices[c].items():
                    totals[c][k] = totals[c].get(k, 0) + v
        self.stdout.write(
            f"{done}/{n} simulated annotators completed, {trials} trials answered in {dt:.1f}s "
            f"(noise={noise}, side_bias={side_bias}, lapse={lapse}{', planted ' + plant if plant else ''})"
        )
        for c, counts in totals.items():
            self.stdout.write(f"  {c}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        for o in outcomes:
            if o.status != "completed":
                self.stdout.write(f"  annotator {o.index}: {o.status} {o.error}")
        if done == 0 and n > 0:
            raise CommandError("no simulated annotator completed; see the lines above")

    @staticmethod
    def _safe(panel: Panel):
        def run(i: int) -> Outcome:
            try:
                return panel.run_one(i)
            except Exception as exc:  # one failing annotator must not stop the panel; it is reported
                return Outcome(i, status="failed", error=f"{type(exc).__name__}: {exc}")

        return run
