"""A full simulated study in the toy world, end to end, in one test.

Render a toy round through the Redis broker with a real Celery worker subprocess (toy presets:
trained UNet and BLIP), open it, send 20 simulated annotators through the real HTTP annotator flow
of a live server (``simulate_annotators``), close the round, export it (``export_stats``), and
check that the statistics recover the preference planted in the annotators, and that allocation
gave every item exactly its target number of votes from distinct annotators.
"""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from generation.spec import GenerationSpec
from studyapp.models import ComparisonItem, Render, StudyRound, Trial, Vote
from studyapp.services.prompts import builtin_prompt_sets_load
from studyapp.services.rounds import round_create, round_transition
from tests.e2e.test_celery_render import (  # noqa: F401  (fixtures)
    child_env, enqueue, queue, redis_client, round_ready, wait_for, workers,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BASELINES = ("ITC", "CAP", "BLEND")
PLANT = 0.8  # P(an annotator picks SHIFT on text match before looking at the images)


@pytest.fixture
def toy_round(round_config):
    builtin_prompt_sets_load()  # transactional tests flush what migrations loaded
    cfg = {
        **round_config, "name": "simulated toy study", "prompt_set": "toyworld", "prompt_limit": 4,
        "objectives": ["SHIFT", *BASELINES], "seeds_per_prompt": 2, "comparisons": "shift-vs-baselines",
        "votes_per_item": 5, "trials_per_annotator": 8, "attention_check_rate": 0.1, "min_view_ms": 0,
        "practice_trials": 1, "round_seed": 7,
        "generation": GenerationSpec.toy(respacing="10", batch_size=8).to_dict(),
    }
    return round_create(config=cfg)


def test_simulated_study_recovers_a_planted_preference(workers, child_env, toy_round, live_server, tmp_path, settings):
    settings.ANNOTATE_CREATE_LIMIT = (1000, 600)  # 20 simulated annotators from one address
    out = enqueue(child_env, toy_round.pk)
    assert "32 render(s) queued" in out, out
    workers.start()
    wait_for(lambda: round_ready(toy_round), timeout=240, what="the toy round to render", workers=workers)
    renders = list(Render.objects.filter(round=toy_round))
    assert len(renders) == 32 and all(r.status == Render.Status.DONE for r in renders)
    assert all(r.provenance["checkpoints"].keys() == {"toyworld/unet.pt", "toyworld/blip.pt"} for r in renders)
    round_transition(round_id=toy_round.pk, to=StudyRound.Status.OPEN)

    call_command(
        "simulate_annotators", str(toy_round.pk), "--n", "20", "--noise", "0.2", "--side-bias", "0.05",
        "--lapse", "0.05", "--base-url", live_server.url, "--concurrency", "4", "--seed", "3",
        "--plant", f"SHIFT={PLANT}", "--plant-criterion", "alignment",
    )

    # Allocation: every item got exactly its target votes, each from a distinct annotator.
    items = list(ComparisonItem.objects.filter(round=toy_round))
    assert len(items) == 4 * 2 * len(BASELINES)
    for item in items:
        annotators = list(Trial.objects.filter(item=item, answered_at__isnull=False).values_list("annotator", flat=True))
        assert len(annotators) == 5 and len(set(annotators)) == 5
    assert Vote.objects.filter(trial__item__round=toy_round).count() == 2 * 5 * len(items)

    round_transition(round_id=toy_round.pk, to=StudyRound.Status.CLOSED)
    call_command("export_stats", str(toy_round.pk), "--out", str(tmp_path / "export"))
    summary = json.loads((tmp_path / "export" / "summary.json").read_text())
    assert (tmp_path / "export" / "figure.png").stat().st_size > 0
    rows = {(r["baseline"], r["criterion"]): r for r in summary["results"]["all"]["preference"]}
    for b in BASELINES:
        r = rows[(b, "alignment")]
        # 4 prompts are fewer than the clustered primary test needs (10): no verdict, and it says why
        assert r["p_holm"] is None and not r["significant"] and "prompt" in r["primary"]["note"], r
        # planted: P(SHIFT) >= PLANT on 95% of trials (5% lapses), whatever the images show; the
        # secondary figures (independent votes) see it
        assert r["rate"] > 0.5 and r["ci_wilson"][0] > 0.5 and r["p_binomial_holm"] < 0.05, r
        # and at least the planted share is consistent with the data (lapses answer at random)
        assert r["ci_wilson"][1] >= 0.95 * PLANT + 0.05 * 0.5, r
