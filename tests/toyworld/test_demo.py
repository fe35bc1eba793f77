"""The README's run command without checkpoints: a toy round whose images tell their prompts apart."""

import numpy as np
import pytest
from django.core.management import call_command
from PIL import Image

from generation.toyworld.oracle import load_oracle
from generation.toyworld.scenes import COLORS
from studyapp.models import Render, StudyRound

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("one_torch_thread")]


def test_demo_opens_a_toy_round_whose_images_match_their_prompts(settings, tmp_path, capsys,
                                                                  django_capture_on_commit_callbacks):
    settings.WEIGHTS_DIR = tmp_path / "no-weights"
    settings.RENDER_DEVICE = "cpu"
    settings.CELERY_BROKER_URL = None
    with django_capture_on_commit_callbacks(execute=True):
        call_command("demo", "--no-server")
    out = capsys.readouterr().out
    assert "toy world" in out and "Tiny random weights" not in out
    rnd = StudyRound.objects.get(name__startswith="Demo: toy world")
    assert rnd.status == StudyRound.Status.OPEN and f"/a/{rnd.token}" in out
    renders = list(Render.objects.filter(round=rnd).select_related("prompt"))
    assert len(renders) == 4 * 5 * 2 and all(r.status == Render.Status.DONE for r in renders)
    assert {r.objective for r in renders} == {"SHIFT", "ITC", "ITM", "CAP", "BLEND"}
    assert all(set(r.provenance["checkpoints"]) == {"toyworld/unet.pt", "toyworld/blip.pt"} for r in renders)

    # Which of the round's four prompts does each image show (chance: 1 in 4)? Two readers, both
    # independent of the guiding BLIP: the colours a person sees at a glance (share of pixels near
    # each palette colour vs the colours the prompt names), and the oracle's alignment.
    prompts = sorted({r.prompt.text for r in renders})
    images = []
    for r in renders:
        with r.image.open("rb") as f:
            images.append(np.asarray(Image.open(f).convert("RGB")))
    images = np.stack(images)
    oracle = load_oracle()
    reading = oracle.read(images)
    scores = np.stack([oracle.alignment(None, p, reading=reading) for p in prompts], axis=1)
    truth = np.array([prompts.index(r.prompt.text) for r in renders])
    by_oracle = float((scores.argmax(1) == truth).mean())
    palette = np.array(list(COLORS.values()), dtype=float)
    dist = np.linalg.norm(images.reshape(len(images), -1, 1, 3).astype(float) - palette, axis=-1)
    share = (dist < 80).mean(1)  # (N, 5): fraction of pixels close to each palette colour
    named = np.array([[c in p.split() for c in COLORS] for p in prompts], dtype=float)
    profile = share / (np.linalg.norm(share, axis=1, keepdims=True) + 1e-9)
    sims = profile @ (named / np.linalg.norm(named, axis=1, keepdims=True)).T
    by_colour = float((sims.argmax(1) == truth).mean())
    # naming each image's prompt among four: about twice chance or better, by either reader
    assert by_colour > 0.45 and by_oracle > 0.35, (by_colour, by_oracle, prompts)
    # telling two images of different prompts apart (given both prompts, which is which? chance
    # 1/2): right for most pairs, by either reader
    for name, m in (("colour", sims), ("oracle", scores)):
        pairs = [m[i, truth[i]] + m[j, truth[j]] > m[i, truth[j]] + m[j, truth[i]]
                 for i in range(len(truth)) for j in range(i + 1, len(truth)) if truth[i] != truth[j]]
        assert np.mean(pairs) > 0.75, (name, np.mean(pairs), prompts)
