"""Concurrent annotators against PostgreSQL: threads, each with its own database connection.

The counters, the unique constraints and the row locks must hold together: every item ends with
exactly its target votes from distinct annotators, nobody sees an item twice, and every
acknowledged answer is in the database exactly once.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from studyapp.models import ComparisonItem, Trial, Vote
from studyapp.services import votes
from studyapp.services.allocation import items_consistency_problems, trial_next, trials_reclaim_expired
from tests.studyapp.factories import make_active_annotator, make_ready_round

pytestmark = pytest.mark.django_db(transaction=True)

N_ANNOTATORS = 24
N_ABANDON = 4


def _in_threads(n: int, fn):
    """Run fn(i) in n threads started together; re-raise the first error."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []
    results: list = [None] * n

    def body(i):
        try:
            barrier.wait(timeout=30)
            results[i] = fn(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung (deadlock?)"
    if errors:
        raise errors[0]
    return results


def _work(rnd, *, abandon_after: int | None = None, resubmit: bool = False):
    """One annotator: consent, then answer until done.

    Returns (annotator id, acknowledged answers, whether it left holding an unanswered trial).
    An abandoner may find every slot taken before its last request, and then holds nothing.
    """
    ann = make_active_annotator(rnd)
    acked = {}
    while True:
        nxt = trial_next(annotator_id=ann.pk)
        t = nxt.trial
        if t is None:
            return ann.pk, acked, False
        if abandon_after is not None and len(acked) == abandon_after:
            return ann.pk, acked, True  # closes the tab holding a leased trial
        choice = ("left", "right", "tie")[(t.position + ann.pk) % 3]
        ans = votes.Answer({"realism": choice, "alignment": "left"}, {"realism": 1000 + t.position, "alignment": 2000})
        res = votes.trial_answer(annotator_id=ann.pk, position=t.position, answer=ans)
        assert res.outcome == "recorded"
        if resubmit:  # a double-click: same answer again
            assert votes.trial_answer(annotator_id=ann.pk, position=t.position, answer=ans).outcome == "unchanged"
        acked[t.position] = (t.item_id, choice)


def test_many_concurrent_annotators_fill_every_item_exactly(round_config):
    rnd = make_ready_round(
        round_config, votes_per_item=5, trials_per_annotator=6, attention_check_rate=0.0, practice_trials=0, min_view_ms=0
    )
    n_items = ComparisonItem.objects.filter(round=rnd).count()
    assert n_items == 24  # 120 slots

    wave1 = _in_threads(
        N_ANNOTATORS,
        lambda i: _work(rnd, abandon_after=2 if i < N_ABANDON else None, resubmit=(i % 3 == 0)),
    )
    assert items_consistency_problems(round_id=rnd.pk) == []
    held = Trial.objects.filter(annotator__round=rnd, answered_at__isnull=True, lease_expires_at__isnull=False)
    n_held = sum(holding for _ann, _acked, holding in wave1)
    assert held.count() == n_held

    # The abandoned leases run out and are reclaimed; a second wave fills the freed slots
    # concurrently (8 annotators: enough distinct people even if several slots are on one item).
    held.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert trials_reclaim_expired() == n_held
    assert items_consistency_problems(round_id=rnd.pk) == []
    wave2 = _in_threads(8, lambda i: _work(rnd))

    items = list(ComparisonItem.objects.filter(round=rnd).values_list("assigned", "completed", "target_votes"))
    assert all(a == c == tv == 5 for a, c, tv in items), items
    assert items_consistency_problems(round_id=rnd.pk) == []

    # Nobody saw an item twice (answered or not).
    per_pair = Counter(Trial.objects.filter(annotator__round=rnd).values_list("annotator_id", "item_id"))
    assert max(per_pair.values()) == 1

    # Every acknowledged answer is in the database once, with the choice acknowledged; nothing else is.
    acked = {(ann_id, pos): v for ann_id, answers, _holding in wave1 + wave2 for pos, v in answers.items()}
    assert len(acked) == n_items * 5
    db = {}
    for v in Vote.objects.filter(trial__annotator__round=rnd).values(
        "trial__annotator_id", "trial__position", "trial__item_id", "criterion", "choice", "winner"
    ):
        key = (v["trial__annotator_id"], v["trial__position"])
        db.setdefault(key, {})[v["criterion"]] = v
    assert set(db) == set(acked)
    for key, (item_id, choice) in acked.items():
        assert db[key]["realism"]["choice"] == choice and db[key]["realism"]["trial__item_id"] == item_id
        assert db[key]["alignment"]["choice"] == "left"
    assert Vote.objects.filter(trial__annotator__round=rnd).count() == 2 * n_items * 5


def test_double_click_on_one_annotator_is_harmless(round_config):
    rnd = make_ready_round(round_config, attention_check_rate=0.0, practice_trials=0, min_view_ms=0)
    ann = make_active_annotator(rnd)
    served = _in_threads(6, lambda i: trial_next(annotator_id=ann.pk).trial.pk)
    assert len(set(served)) == 1
    t = Trial.objects.get(pk=served[0])
    ans = votes.Answer({"realism": "left", "alignment": "right"}, {"realism": 1000, "alignment": 1000})
    outcomes = _in_threads(6, lambda i: votes.trial_answer(annotator_id=ann.pk, position=t.position, answer=ans).outcome)
    assert sorted(outcomes) == ["recorded"] + ["unchanged"] * 5
    assert Vote.objects.filter(trial=t).count() == 2
    assert ComparisonItem.objects.get(pk=t.item_id).completed == 1


def test_concurrent_sweeps_reclaim_each_expired_slot_exactly_once(round_config):
    rnd = make_ready_round(round_config, votes_per_item=4, trials_per_annotator=20, attention_check_rate=0.0,
                           practice_trials=0, min_view_ms=0)
    # 12 annotators each hold one leased trial; items repeat across them.
    anns = [make_active_annotator(rnd) for _ in range(12)]
    held = [trial_next(annotator_id=a.pk).trial for a in anns]
    Trial.objects.filter(pk__in=[t.pk for t in held]).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    def body(i):
        if i < 4:
            return trials_reclaim_expired(limit=5)  # sweeps compete for the same expired trials
        return _work(rnd)  # new annotators allocate (and answer) meanwhile

    results = _in_threads(10, body)
    reclaimed = sum(results[:4]) + trials_reclaim_expired()  # whatever the limited sweeps left
    assert reclaimed == 12
    assert items_consistency_problems(round_id=rnd.pk) == []
    assert not Trial.objects.filter(pk__in=[t.pk for t in held], lease_expires_at__isnull=False).exists()


def _hold_all_items(rnd, locked: threading.Event, release: threading.Event):
    from django.db import transaction

    with transaction.atomic():
        list(ComparisonItem.objects.select_for_update().filter(round=rnd))
        locked.set()
        release.wait(10)
    connection.close()


@pytest.mark.parametrize("release_after_s, expect", [(0.15, "trial"), (None, "busy")])
def test_allocation_waits_while_items_are_held_and_never_ends_a_session_over_it(round_config, monkeypatch,
                                                                                 release_after_s, expect):
    from studyapp.services import allocation
    from studyapp.services.annotators import AnnotateError

    rnd = make_ready_round(round_config, attention_check_rate=0.0, practice_trials=0, min_view_ms=0)
    ann = make_active_annotator(rnd)
    monkeypatch.setattr(allocation, "PICK_RETRIES", 12)  # about 0.3 s of waiting
    locked, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_all_items, args=(rnd, locked, release))
    holder.start()
    assert locked.wait(10)
    timer = threading.Timer(release_after_s, release.set) if release_after_s else None
    if timer:
        timer.start()
    try:
        if expect == "trial":
            assert trial_next(annotator_id=ann.pk).trial is not None
        else:
            with pytest.raises(AnnotateError) as exc:
                trial_next(annotator_id=ann.pk)
            assert exc.value.code == "busy" and exc.value.status == 503
    finally:
        release.set()
        holder.join()
    ann.refresh_from_db()
    assert ann.status == "active"
    assert items_consistency_problems(round_id=rnd.pk) == []
