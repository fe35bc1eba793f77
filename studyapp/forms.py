"""Input validation only; the rules live in RoundConfig and the services."""

from __future__ import annotations

import json

from django import forms

from studyapp.models import PromptSet
from studyapp.round_config import OBJECTIVES


class RoundForm(forms.Form):
    name = forms.CharField(max_length=200)
    prompt_set = forms.ModelChoiceField(queryset=PromptSet.objects.all(), to_field_name="name")
    prompt_limit = forms.IntegerField(min_value=1, required=False, help_text="Use the first N prompts (blank: all).")
    objectives = forms.MultipleChoiceField(
        choices=[(o, o) for o in OBJECTIVES], initial=list(OBJECTIVES), widget=forms.CheckboxSelectMultiple
    )
    seeds_per_prompt = forms.IntegerField(min_value=1, initial=1)
    comparisons = forms.ChoiceField(
        choices=[("shift-vs-baselines", "SHIFT vs each baseline"), ("all-pairs", "All pairs of the chosen objectives")]
    )
    votes_per_item = forms.IntegerField(min_value=1, initial=3)
    trials_per_annotator = forms.IntegerField(min_value=1, initial=30)
    attention_check_rate = forms.FloatField(min_value=0, max_value=0.99, initial=0.1)
    tie_rule = forms.ChoiceField(choices=[("exclude", "Exclude ties"), ("half", "Ties count half")])
    round_seed = forms.IntegerField(min_value=0, initial=0)
    generation = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6}),
        initial="{}",
        required=False,
        help_text="Generation spec as JSON (blank or {} for the defaults).",
    )

    def clean_generation(self):
        raw = self.cleaned_data.get("generation") or "{}"
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("must be a JSON object")
        return value

    def to_config(self) -> dict:
        d = dict(self.cleaned_data)
        d["prompt_set"] = d["prompt_set"].name
        if d.get("prompt_limit") is None:
            d.pop("prompt_limit", None)
        return d


class PromptSetImportForm(forms.Form):
    name = forms.SlugField(max_length=80, help_text="Lowercase letters, digits and dashes.")
    title = forms.CharField(max_length=200, required=False)
    source = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False, help_text="Attribution and licence.")
    file = forms.FileField(help_text="UTF-8 TSV or CSV with a header: prompt, optional category and id.")
