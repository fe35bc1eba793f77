"""Input validation only; the rules live in RoundConfig and the services.

The new-round form parses what a person typed; :class:`RoundConfig` then judges the config built
from it, and its problems are shown beside the fields they concern, together with the form's own
(a bad JSON override never hides a bad vote count). Optional settings left blank are left out of
the config, so the config file and the form mean the same thing by "not set".
"""

from __future__ import annotations

import json

from django import forms

from studyapp.exceptions import ConfigError
from studyapp.models import PromptSet
from studyapp.round_config import MAX_CONSENT_CHARS, MAX_NAME_CHARS, OBJECTIVES, RoundConfig
from studyapp.stats.config import MAX_LOOKS

# Form field -> where its value goes in the round config ("exclusions.x": nested).
CONFIG_FIELDS = {
    "name": "name",
    "prompt_set": "prompt_set",
    "prompt_limit": "prompt_limit",
    "objectives": "objectives",
    "seeds_per_prompt": "seeds_per_prompt",
    "comparisons": "comparisons",
    "votes_per_item": "votes_per_item",
    "trials_per_annotator": "trials_per_annotator",
    "attention_check_rate": "attention_check_rate",
    "practice_trials": "practice_trials",
    "min_view_ms": "min_view_ms",
    "assignment_timeout_s": "assignment_timeout_s",
    "tie_rule": "tie_rule",
    "round_seed": "round_seed",
    "min_attention_accuracy": "exclusions.min_attention_accuracy",
    "min_response_ms": "exclusions.min_response_ms",
    "max_side_rate": "exclusions.max_side_rate",
    "side_rate_min_votes": "exclusions.side_rate_min_votes",
    "monitoring_planned_votes": "monitoring.planned_votes",
    "monitoring_looks": "monitoring.looks",
    "auto_close_when_decided": "auto_close.when_decided",
    "auto_close_at_votes": "auto_close.at_votes",
    "prolific_completion_url": "prolific_completion_url",
    "consent_text": "consent_text",
}
_FIELD_OF_KEY = {v: k for k, v in CONFIG_FIELDS.items()}

# Planning assumptions (the estimate only; not part of the round's config).
DEFAULT_EXPECTED_PREFERENCE = 0.6  # STUDY.md 4.8's worked example: a 60% preference for SHIFT
DEFAULT_TIE_RATE = 0.25  # STUDY.md 4.8: "e.g. 25% ties" (DrawBench-style studies with a "can't decide" option)
# Kish's design effect 1 + (m - 1) * ICC per clustering factor. STUDY.md 4.8: 5-10 votes per
# prompt at an ICC of 0.05-0.1 gives 1.2-1.9, and prompts crossed with annotators about 2.5 in
# its simulation; 2 sits between the two until a pilot measures it.
DEFAULT_DESIGN_EFFECT = 2.0


def _json_problem(raw: str) -> tuple[object, str | None]:
    try:
        return json.loads(raw), None
    except RecursionError:
        return None, "nested too deeply to be a generation override"
    except ValueError as exc:  # JSONDecodeError, and Python's limit on huge integer literals
        return None, f"not valid JSON: {exc}"


class RoundForm(forms.Form):
    name = forms.CharField(max_length=MAX_NAME_CHARS)
    prompt_set = forms.ModelChoiceField(queryset=PromptSet.objects.all(), to_field_name="name")
    prompt_limit = forms.IntegerField(
        min_value=1, max_value=1_000_000, required=False,
        help_text="Use the first N prompts of the set (blank: every prompt).",
    )
    objectives = forms.MultipleChoiceField(
        choices=[(o, o) for o in OBJECTIVES], initial=["ITC", "CAP", "SHIFT", "BLEND"],
        widget=forms.CheckboxSelectMultiple,
    )
    seeds_per_prompt = forms.IntegerField(
        min_value=1, max_value=1000, initial=1,
        help_text="Images per prompt and objective; seed k of every objective starts from the same noise.",
    )
    comparisons = forms.ChoiceField(
        choices=[("shift-vs-baselines", "SHIFT vs each baseline"), ("all-pairs", "All pairs of the chosen objectives")]
    )
    votes_per_item = forms.IntegerField(
        min_value=1, max_value=1000, initial=3, help_text="Distinct annotators per (prompt, seed, pair)."
    )
    trials_per_annotator = forms.IntegerField(
        min_value=1, max_value=10000, initial=30, help_text="Main-block trials, attention checks included."
    )
    attention_check_rate = forms.FloatField(
        min_value=0, max_value=0.99, initial=0.1, help_text="Share of the trials that are known-answer checks."
    )
    practice_trials = forms.IntegerField(
        min_value=0, max_value=20, required=False, help_text="Practice trials with feedback (blank: 2)."
    )
    min_view_ms = forms.IntegerField(
        min_value=0, max_value=60_000, required=False, label="Minimum viewing time (ms)",
        help_text="Answers unlock after this many milliseconds (blank: 1500).",
    )
    assignment_timeout_s = forms.IntegerField(
        min_value=30, max_value=7 * 86400, required=False, label="Assignment timeout (s)",
        help_text="An unanswered trial goes back to the pool after this many seconds (blank: 900).",
    )
    tie_rule = forms.ChoiceField(
        choices=[("", "Exclude ties (default)"), ("exclude", "Exclude ties"), ("half", "Ties count half")],
        required=False,
    )
    round_seed = forms.IntegerField(
        min_value=0, max_value=2**31 - 1, required=False,
        help_text="Seed of the paired noise, the item order and the bootstrap (blank: 0).",
    )
    min_attention_accuracy = forms.FloatField(
        min_value=0, max_value=1, required=False, help_text="Exclude annotators below this attention-check accuracy (blank: 0.8)."
    )
    min_response_ms = forms.IntegerField(
        min_value=0, required=False, label="Minimum response time (ms)",
        help_text="Votes faster than this are dropped (blank: 800).",
    )
    max_side_rate = forms.FloatField(
        required=False, label="Maximum same-side rate",
        help_text="Exclude annotators who pick one side this often, in (0.5, 1] (blank: 0.9).",
    )
    no_side_rule = forms.BooleanField(required=False, label="No same-side rule")
    side_rate_min_votes = forms.IntegerField(
        min_value=1, required=False, help_text="The same-side rule applies from this many votes (blank: 20)."
    )
    monitoring_planned_votes = forms.IntegerField(
        min_value=1, required=False, label="Planned votes per cell",
        help_text="Votes per comparison and criterion at the last look (blank: no interim looks; one analysis "
                  "when the round closes).",
    )
    monitoring_looks = forms.IntegerField(
        min_value=1, max_value=MAX_LOOKS, required=False, label="Looks",
        help_text="Equally spaced analyses up to the planned votes, O'Brien-Fleming-type boundaries (blank: 1).",
    )
    auto_close_when_decided = forms.BooleanField(
        required=False, label="Close the round when every cell is decided (needs planned votes)",
    )
    auto_close_at_votes = forms.IntegerField(
        min_value=1, required=False, label="Close at this many regular votes",
        help_text="Closes the round automatically (blank: close it yourself).",
    )
    prolific_completion_url = forms.CharField(
        max_length=2000, required=False, label="Prolific completion URL",
        help_text="https://app.prolific.com/submissions/complete?cc=... (blank: the platform's completion page).",
    )
    consent_text = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5}), max_length=MAX_CONSENT_CHARS, required=False,
        help_text="Your consent page: contact, ethics approval, payment, data use (blank: the platform's default text).",
    )
    preset = forms.ChoiceField(choices=(), required=False, widget=forms.RadioSelect, label="Generation preset")
    generation = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}), max_length=20_000, required=False,
        label="Advanced: generation override (JSON)",
        help_text='Fields of the generation spec that replace the preset\'s, e.g. {"respacing": "50"} (blank: none).',
    )
    # Planning assumptions: the estimate uses them; the round does not store them.
    expected_preference = forms.FloatField(
        min_value=0.51, max_value=0.99, required=False, initial=DEFAULT_EXPECTED_PREFERENCE,
        help_text="The SHIFT preference you expect, e.g. 0.6.",
    )
    expected_tie_rate = forms.FloatField(
        min_value=0, max_value=0.9, required=False, initial=DEFAULT_TIE_RATE, help_text="Share of \"can't decide\" answers.",
    )
    design_effect = forms.FloatField(
        min_value=1, max_value=20, required=False, initial=DEFAULT_DESIGN_EFFECT,
        help_text="Inflation for votes clustered by prompt and annotator, 1 + (m - 1) x ICC per factor; "
        "2 until a pilot measures it.",
    )

    PLANNING_FIELDS = ("expected_preference", "expected_tie_rate", "design_effect")

    def __init__(self, *args, check_config: bool = True, **kwargs):
        # check_config=False: parse the fields only (the live estimate wants every value that
        # parses, even while the config as a whole has problems).
        self.check_config = check_config
        super().__init__(*args, **kwargs)
        from generation.presets import preset_choices

        self.fields["preset"].choices = preset_choices()

    def clean_generation(self):
        raw = (self.cleaned_data.get("generation") or "").strip()
        if not raw:
            return {}
        value, problem = _json_problem(raw)
        if problem:
            raise forms.ValidationError(problem)
        if not isinstance(value, dict):
            raise forms.ValidationError("must be a JSON object of generation spec fields, e.g. {\"respacing\": \"50\"}")
        preset = self.data.get("preset")
        if "preset" in value and preset and value["preset"] != preset:
            raise forms.ValidationError("choose the preset above, not in the override")
        return value

    def to_config(self) -> dict:
        """The round config from the fields that parsed; blank optional settings are left out."""
        d = self.cleaned_data
        config: dict = {}
        for field, key in CONFIG_FIELDS.items():
            value = d.get(field)
            if value is None or value == "" or (field == "objectives" and value == []):
                continue
            if value is False:  # an unticked box means the setting is not used
                continue
            if field == "prompt_set":
                value = value.name
            if "." in key:
                group, sub = key.split(".", 1)
                config.setdefault(group, {})[sub] = value
            else:
                config[key] = value
        if d.get("no_side_rule"):
            config.setdefault("exclusions", {})["max_side_rate"] = None
        generation = dict(d.get("generation") or {})
        if d.get("preset"):
            generation = {"preset": d["preset"], **generation}
        if generation or "generation" in d:
            config["generation"] = generation
        return config

    def clean(self):
        cleaned = super().clean()
        if not self.check_config:
            return cleaned
        try:
            RoundConfig.from_dict(self.to_config())
        except ConfigError as exc:
            unparsed = set(self.errors)  # fields whose value never reached the config
            for problem in exc.problems:
                self._add_config_problem(problem, unparsed)
        return cleaned

    def _add_config_problem(self, problem: str, unparsed: set[str]) -> None:
        key, _, message = problem.partition(": ")
        if key.startswith("generation.preset"):
            field = "preset"
        elif key.startswith("generation"):
            field = "generation"
        else:
            field = _FIELD_OF_KEY.get(key)
        if field is None or not message:
            self.add_error(None, problem)
        elif field in unparsed:
            return  # the field's own message already says what is wrong
        else:
            self.add_error(field, problem if field == "generation" else message)

    @classmethod
    def initial_from_config(cls, config: dict, *, name: str) -> dict:
        """Form values that recreate ``config`` (Duplicate round): the generation as its preset plus
        only the fields that differ from it."""
        from generation.presets import preset_name, spec_from_config

        initial = {}
        for field, key in CONFIG_FIELDS.items():
            node = config
            for part in key.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if node is not None:
                initial[field] = node
        initial["name"] = name
        if (config.get("exclusions") or {}).get("max_side_rate", 0.9) is None:
            initial["no_side_rule"] = True
        gen = dict(config.get("generation") or {})
        preset = preset_name(gen)
        try:
            base = spec_from_config({"preset": preset}).to_dict()
        except ValueError:
            base = {}
        overrides = {k: v for k, v in gen.items() if k != "preset" and base.get(k, object()) != v}
        initial["preset"] = preset
        initial["generation"] = json.dumps(overrides) if overrides else ""
        return initial


class PromptSetImportForm(forms.Form):
    name = forms.SlugField(max_length=80, help_text="Lowercase letters, digits and dashes.")
    title = forms.CharField(max_length=200, required=False)
    source = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False, help_text="Attribution and licence.")
    file = forms.FileField(help_text="UTF-8 TSV or CSV with a header: prompt, optional category and id.")


class PromptSearchForm(forms.Form):
    q = forms.CharField(max_length=200, required=False, label="Search")
    category = forms.CharField(max_length=80, required=False)
