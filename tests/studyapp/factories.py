"""Test data for the annotator feature: rounds with real (tiny) PNG renders, and annotators
brought to the main block through the real services. No torch, no render service."""

from __future__ import annotations

import hashlib
import io
import secrets
from datetime import timedelta

from django.core.files.base import ContentFile
from PIL import Image, PngImagePlugin

from studyapp.models import Annotator, Prompt, PromptSet, Render, StudyRound
from studyapp.services import allocation, votes
from studyapp.services.annotators import COMPREHENSION, PlatformIds, annotator_check_comprehension, annotator_consent
from studyapp.services.rounds import round_create, round_transition

CORRECT = {field: correct for field, _q, _o, correct in COMPREHENSION}
WRONG = {field: ("a" if correct != "a" else "b") for field, correct in CORRECT.items()}


def png_for(render: Render, size: int = 48) -> bytes:
    """A small distinct PNG per render, with metadata that names its objective and seed (the
    blinding tests check that none of it reaches an annotator)."""
    digest = hashlib.sha256(f"{render.pk}:{render.objective}:{render.seed}".encode()).digest()
    img = Image.new("RGB", (size, size), tuple(digest[:3]))
    for i in range(0, size, 8):
        for j in range(0, size, 8):
            if (i + j + digest[3]) % 16 == 0:
                img.paste(tuple(digest[4:7]), (i, j, i + 8, j + 8))
    info = PngImagePlugin.PngInfo()
    info.add_text("objective", render.objective)
    info.add_text("Comment", f"render {render.pk} seed {render.seed} objective {render.objective}")
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=info, dpi=(72, 72))
    return buf.getvalue()


def make_prompt_set(name: str = "annotate-test", n: int = 6) -> PromptSet:
    ps, created = PromptSet.objects.get_or_create(name=name, defaults={"title": "annotate test prompts"})
    if created:
        Prompt.objects.bulk_create(
            Prompt(prompt_set=ps, position=i, text=f"a photo of object number {i} on a table", external_id=f"xid-{name}-{i:04d}")
            for i in range(n)
        )
    return ps


def make_ready_round(config: dict, *, open_it: bool = True, **overrides) -> StudyRound:
    """Create a round (services.rounds.round_create), give every render a generated PNG saved
    through default_storage, mark it done, then move the round to ready and (by default) open."""
    cfg = {**config, **overrides}
    if "prompt_set" not in overrides:
        cfg["prompt_set"] = make_prompt_set(n=max(cfg.get("prompt_limit") or 6, 2)).name
    rnd = round_create(config=cfg)
    for r in rnd.renders.all():
        r.image.save(f"{secrets.token_hex(10)}.png", ContentFile(png_for(r)), save=False)
        r.status = Render.Status.DONE
        r.provenance = {}
        r.save(update_fields=["image", "status", "provenance"])
    rnd = round_transition(round_id=rnd.pk, to="ready")
    if open_it:
        rnd = round_transition(round_id=rnd.pk, to="open")
    return rnd


def make_active_annotator(rnd: StudyRound, *, prolific_pid: str = "") -> Annotator:
    """An annotator who consented, passed the check and answered the practice trials."""
    ann = annotator_consent(rnd=rnd, ids=PlatformIds(prolific_pid=prolific_pid))
    annotator_check_comprehension(annotator_id=ann.pk, answers=CORRECT)
    while True:
        ann.refresh_from_db()
        if ann.status != Annotator.Status.PRACTICE:
            return ann
        nxt = allocation.trial_next(annotator_id=ann.pk)
        votes.trial_answer(
            annotator_id=ann.pk,
            position=nxt.trial.position,
            answer=votes.Answer({"realism": "left", "alignment": "left"}, {"realism": 900, "alignment": 900}),
            now=nxt.trial.served_at + timedelta(seconds=10),
        )
