"""The staff exclusion service and its place in the analysis settings (thresholds, junk, roles)."""

from __future__ import annotations

import pytest

from studyapp.models import Annotator, AnnotatorExclusion
from studyapp.services.exclusions import MAX_REASON_CHARS, ExclusionError, annotators_exclude
from studyapp.stats import AnalysisSettings, SettingsError

from .test_results_rows import add_votes, open_round

pytestmark = pytest.mark.django_db


@pytest.fixture
def anns(round_config):
    rnd = open_round(round_config)
    add_votes(rnd, n_annotators=2)
    return list(Annotator.objects.filter(round=rnd).order_by("pk"))


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("res", is_staff=True)


@pytest.mark.parametrize(
    "reason, ok",
    [("x" * MAX_REASON_CHARS, True), ("x" * (MAX_REASON_CHARS + 1), False), ("", False), ("  \n\t ", False),
     ("bad\x00reason", False), ("  spaced   out \n reason ", True)],
    ids=["at the cap", "one over", "empty", "blank", "nul", "whitespace collapsed"],
)
def test_reason_is_required_and_bounded(anns, staff, reason, ok):
    if ok:
        (ex,) = annotators_exclude(annotator_ids=[anns[0].pk], reason=reason, by=staff)
        assert ex.reason == " ".join(reason.split())
    else:
        with pytest.raises(ExclusionError):
            annotators_exclude(annotator_ids=[anns[0].pk], reason=reason, by=staff)
        assert not AnnotatorExclusion.objects.exists()


def test_only_staff_can_exclude(anns, django_user_model):
    someone = django_user_model.objects.create_user("someone")
    for by in (someone, None):
        with pytest.raises(ExclusionError):
            annotators_exclude(annotator_ids=[anns[0].pk], reason="why", by=by)
    assert not AnnotatorExclusion.objects.exists()


def test_excluding_twice_keeps_the_first_decision(anns, staff):
    annotators_exclude(annotator_ids=[anns[0].pk], reason="first", by=staff)
    created = annotators_exclude(annotator_ids=[a.pk for a in anns], reason="second", by=staff)
    assert [e.annotator_id for e in created] == [anns[1].pk]
    assert dict(AnnotatorExclusion.objects.values_list("annotator_id", "reason")) == {anns[0].pk: "first", anns[1].pk: "second"}


def test_staff_exclusions_in_analysis_settings_round_trip_and_junk():
    s = AnalysisSettings.from_dict({"staff_exclusions": {"b": "late", "a": "=1+1"}})
    assert s.staff_exclusions == (("a", "=1+1"), ("b", "late"))
    assert s.to_dict()["staff_exclusions"] == {"a": "=1+1", "b": "late"}
    assert AnalysisSettings.from_dict(s.to_dict()) == s
    assert AnalysisSettings.from_dict({}).staff_exclusions == ()  # settings frozen before this field existed
    for junk in (["a"], {"a": ""}, {"a": 3}, "a"):
        with pytest.raises(SettingsError, match="staff_exclusions"):
            AnalysisSettings.from_dict({"staff_exclusions": junk})
