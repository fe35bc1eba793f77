"""Blinding (DESIGN invariant 2): a whole annotator session is recorded — every HTML page, JSON
reply, header, cookie, URL, static asset and image — and scanned for anything that could tell an
annotator which objective made an image: objective names, render/item ids, seeds, prompt-set
internal ids and file names."""

from __future__ import annotations

import re
import struct
from html.parser import HTMLParser
from pathlib import PurePosixPath

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import reverse

from studyapp.models import ComparisonItem, Prompt, Render, Trial
from tests.studyapp.factories import CORRECT, WRONG, make_ready_round, png_for

pytestmark = pytest.mark.django_db

OBJECTIVES = ("ITC", "ITM", "CAP", "SHIFT", "BLEND")
# Opaque tokens are base64url; a name only counts when it is not part of a longer such word.
_B = r"[A-Za-z0-9_\-]"
OBJECTIVE_RE = re.compile(rf"(?<!{_B})({'|'.join(OBJECTIVES)})(?!{_B})", re.IGNORECASE)
WORDS_RE = re.compile(rf"(?<!{_B})(render|renders|seed|seeds|objective|objectives|item_id|render_id|provenance|guidance)(?!{_B})", re.IGNORECASE)
JSON_KEYS = {"ok", "trial", "done_url", "outcome", "position", "feedback", "phase", "number", "total", "prompt", "left",
             "right", "min_view_ms", "answers", "revising", "error", "message", "correct", "criterion", "expected",
             "next_error", "realism", "alignment", "verdict", "why"}
PNG_ALLOWED_CHUNKS = {b"IHDR", b"IDAT", b"IEND"}


class Recorder:
    """A test client that keeps every response it receives."""

    def __init__(self):
        self.client = Client()
        self.responses = []

    def get(self, path, **kw):
        r = self.client.get(path, **kw)
        self.responses.append((path, r))
        return r

    def post(self, path, data, **kw):
        r = self.client.post(path, data, **kw)
        self.responses.append((path, r))
        return r


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("href", "src", "action") and v:
                self.urls.append(v)


def png_chunks(data: bytes):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    i = 8
    while i < len(data):
        (length,) = struct.unpack(">I", data[i : i + 4])
        ctype = data[i + 4 : i + 8]
        yield ctype, data[i + 8 : i + 8 + length]
        i += 12 + length


def leaks_in_text(text: str, secrets: list[str]) -> list[str]:
    found = [m.group(0) for m in OBJECTIVE_RE.finditer(text)] + [m.group(0) for m in WORDS_RE.finditer(text)]
    found += [s for s in secrets if s and s in text]
    return found


def leaks_in_png(data: bytes, secrets: list[str]) -> list[str]:
    found = []
    for ctype, body in png_chunks(data):
        if ctype not in PNG_ALLOWED_CHUNKS:
            found.append(f"PNG chunk {ctype!r}")
        elif ctype != b"IDAT":  # compressed pixels are random bytes; everything else is scanned
            found += leaks_in_text(body.decode("latin-1"), secrets)
    return found


def run_session(rnd) -> Recorder:
    rec = Recorder()
    tok = rnd.token
    u = lambda name, *a: reverse(f"annotate:{name}", args=[tok, *a])  # noqa: E731
    rec.get(u("start") + "?PROLIFIC_PID=aa11bb22cc33&STUDY_ID=st1&SESSION_ID=se1")
    rec.post(u("consent"), {"consent": "yes", "PROLIFIC_PID": "aa11bb22cc33", "STUDY_ID": "st1", "SESSION_ID": "se1"})
    rec.get(u("instructions"))
    rec.get(u("check"))
    rec.post(u("check"), WRONG)
    rec.post(u("check"), CORRECT)
    # Practice through the plain form (feedback page), the rest through the JSON API.
    page = rec.get(u("trial"))
    pos = re.search(rb'name="position" value="(\d+)"', page.content).group(1).decode()
    for m in re.finditer(rb'src="(/a/[^"]+/img/[^"]+)"', page.content):
        rec.get(m.group(1).decode())
    rec.post(u("trial"), {"position": pos, "realism": "left", "alignment": "left"})
    data = rec.get(u("api_next")).json()
    answered = 0
    while data.get("trial"):
        t = data["trial"]
        rec.get(t["left"])
        rec.get(t["right"])
        data = rec.post(u("api_answer") + "?next=1", {"position": t["position"], "realism": "right", "alignment": "tie",
                                                      "rt_realism": "1500", "rt_alignment": "1700"}).json()
        answered += 1
        if answered == 1:
            rec.get(u("trial"))  # the HTML trial page of a main trial too
        if answered == 2:
            undo = rec.get(u("api_undo")).json()
            data = rec.post(u("api_answer") + "?next=1", {"position": undo["trial"]["position"], "realism": "left",
                                                          "alignment": "tie", "revise": "1"}).json()
            # A stale tab's different answer: refused, and the refusal is annotator-facing too.
            rec.post(u("api_answer"), {"position": undo["trial"]["position"], "realism": "right", "alignment": "right"})
        # Errors are annotator-facing too.
        rec.post(u("api_answer"), {"position": "999", "realism": "left", "alignment": "left"})
        rec.post(u("api_answer"), {"position": "x"})
    rec.get(data["done_url"])
    rec.get(u("image", "not-a-token"))
    return rec


def secrets_of(rnd) -> list[str]:
    """Strings that must never reach an annotator: file names, internal prompt ids."""
    out = []
    for name in Render.objects.filter(round=rnd).values_list("image", flat=True):
        p = PurePosixPath(name)
        out += [name, p.name, p.stem]
    out += [x for x in Prompt.objects.filter(prompt_set=rnd.prompt_set).values_list("external_id", flat=True) if x]
    return out


@pytest.fixture
def session(round_config):
    rnd = make_ready_round(round_config, min_view_ms=0, practice_trials=1, trials_per_annotator=6, attention_check_rate=0.34)
    return rnd, run_session(rnd)


def test_no_byte_an_annotator_receives_names_an_objective_id_seed_or_file(session):
    rnd, rec = session
    secrets = secrets_of(rnd)
    assert len(rec.responses) > 30
    problems = []
    static_urls = set()
    for path, r in rec.responses:
        where = f"{path} ({r.status_code})"
        problems += [f"{where} URL: {x}" for x in leaks_in_text(path, secrets)]
        # Every URL an annotator sees: no numeric path segment (database ids), nothing named.
        assert not re.search(r"/\d+(/|$)", path), path
        for name, value in r.items():
            problems += [f"{where} header {name}: {x}" for x in leaks_in_text(f"{name}: {value}", secrets)]
            assert name.lower() not in ("etag", "last-modified", "content-disposition") or value == "inline", (name, value)
        for name, morsel in r.cookies.items():
            problems += [f"{where} cookie: {x}" for x in leaks_in_text(morsel.OutputString(), secrets)]
        ctype = r.get("Content-Type", "")
        if ctype.startswith("image/"):
            assert ctype == "image/png" and "private" in r["Cache-Control"]
            problems += [f"{where} image: {x}" for x in leaks_in_png(r.content, secrets)]
            continue
        body = r.content.decode()
        problems += [f"{where} body: {x}" for x in leaks_in_text(body, secrets)]
        if ctype.startswith("application/json"):
            problems += [f"{where} JSON key {k}" for k in json_keys(r.json()) if k not in JSON_KEYS]
        elif ctype.startswith("text/html"):
            parser = Links()
            parser.feed(body)
            for link in parser.urls:
                assert not re.search(r"/\d+(/|$)", link.split("?")[0]), link
                if link.startswith("/static/"):
                    static_urls.add(link)
    assert static_urls >= {"/static/css/site.css", "/static/css/annotate.css", "/static/js/annotate.js"}
    for link in static_urls:
        with open(finders.find(link.removeprefix("/static/")), encoding="utf-8") as f:
            problems += [f"{link}: {x}" for x in leaks_in_text(f.read(), secrets)]
    assert problems == []


def json_keys(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from json_keys(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from json_keys(v)


def test_each_trial_side_has_its_own_opaque_url_and_images_are_bare_pixels(session):
    rnd, rec = session
    image_paths = [p for p, r in rec.responses if "/img/" in p and r.status_code == 200]
    trials = Trial.objects.filter(annotator__round=rnd)
    tokens = [t for pair in trials.values_list("left_token", "right_token") for t in pair]
    assert len(set(tokens)) == len(tokens)  # one render shown twice still gets two different URLs
    assert {p.rsplit("/", 1)[1] for p in image_paths} <= set(tokens)
    for p, r in rec.responses:
        if "/img/" in p and r.status_code == 200:
            assert [c for c, _ in png_chunks(r.content) if c != b"IDAT"] == [b"IHDR", b"IEND"]


def test_the_scanner_finds_planted_leaks(session):
    """The scan above must be able to fail: it flags each kind of leak when one is there."""
    rnd, _ = session
    secrets = secrets_of(rnd)
    render = Render.objects.filter(round=rnd).first()
    assert leaks_in_png(png_for(render), secrets)  # the stored file carries objective metadata
    assert leaks_in_text('{"left": "/a/x/img/abc", "who": "shift"}', secrets)
    assert leaks_in_text(f"<img src='/media/{render.image.name}'>", secrets)
    assert leaks_in_text("seed 3", secrets)
    ext = Prompt.objects.filter(prompt_set=rnd.prompt_set).exclude(external_id="").first().external_id
    assert leaks_in_text(f"<p data-x='{ext}'>", secrets)
    assert not leaks_in_text("a photo of object number 3 on a table; capital shifting blended", secrets)
    assert ComparisonItem.objects.filter(round=rnd).exists()
