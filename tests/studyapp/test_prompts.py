"""Prompt sets: the shipped ones, and researchers' files with every problem named by line."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from studyapp.exceptions import ImportFileError
from studyapp.models import Prompt, PromptSet
from studyapp.services.prompts import prompt_set_import

pytestmark = pytest.mark.django_db


def test_shipped_prompt_sets_are_loaded_on_migrate():
    drawbench = PromptSet.objects.get(name="drawbench")
    coco = PromptSet.objects.get(name="coco")
    assert drawbench.prompts.count() == 200
    assert coco.prompts.count() == 1000
    # DrawBench's 11 categories with the counts of data/SOURCES.md
    counts = {c: drawbench.prompts.filter(category=c).count() for c in drawbench.prompts.values_list("category", flat=True).distinct()}
    assert counts == {
        "Reddit": 38, "Colors": 25, "Text": 21, "DALL-E": 20, "Descriptions": 20, "Positional": 20,
        "Counting": 19, "Conflicting": 10, "Gary Marcus et al.": 10, "Misspellings": 10, "Rare Words": 7,
    }
    assert coco.prompts.get(position=0).external_id == "227049"
    assert "CC BY 4.0" in coco.source and "Saharia" in drawbench.source
    assert PromptSet.objects.get(name="toyworld").prompts.count() == 26


def test_loading_the_shipped_sets_again_changes_nothing():
    from studyapp.services.prompts import builtin_prompt_sets_load

    before = Prompt.objects.count()
    assert builtin_prompt_sets_load() == []
    assert Prompt.objects.count() == before


def test_good_tsv_and_csv_files_import():
    ps = prompt_set_import(name="mine", data="prompt\tcategory\na red cube\tColors\na dog\t\n".encode())
    assert list(ps.prompts.values_list("text", "category", "position")) == [("a red cube", "Colors", 0), ("a dog", "", 1)]
    ps = prompt_set_import(name="mine-csv", data=b'id,prompt\nx1,"a cat, sitting"\nx2,a bird\n')
    assert list(ps.prompts.values_list("external_id", "text")) == [("x1", "a cat, sitting"), ("x2", "a bird")]


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"words\tcategory\na\tb\n", "line 1: no prompt column"),
        (b"prompt\tcategory\na cat\tA\n\tB\n", "line 3: empty prompt"),
        (b"prompt\tcategory\na cat\tA\na dog\n", "line 3: 1 column(s), the header has 2"),
        (b"prompt\na cat\na dog\na cat\n", "line 4: duplicate prompt (same text as line 2)"),
        (b"prompt\na cat\n\xff\xfe a dog\n", "line 3: not UTF-8"),
        (b"id,prompt\n1,a\n1,b\n", "line 3: duplicate id '1'"),
        (b"", "the file is empty"),
    ],
)
def test_malformed_files_are_rejected_with_line_and_reason_and_nothing_is_imported(data, expected):
    before = Prompt.objects.count()
    with pytest.raises(ImportFileError) as exc:
        prompt_set_import(name="bad", data=data, filename="bad.tsv")
    assert expected in str(exc.value)
    assert not PromptSet.objects.filter(name="bad").exists()
    assert Prompt.objects.count() == before


def test_all_problems_are_listed_together():
    data = b"prompt\tcategory\n\tA\na\tB\nb\nb\tC\na\tD\n"
    with pytest.raises(ImportFileError) as exc:
        prompt_set_import(name="bad", data=data)
    assert [p.split(":")[0] for p in exc.value.problems] == ["line 2", "line 4", "line 6"]


def test_existing_name_is_refused():
    with pytest.raises(ImportFileError, match="exists"):
        prompt_set_import(name="drawbench", data=b"prompt\nx\n")


def test_import_prompts_command(tmp_path, capsys):
    good = tmp_path / "p.tsv"
    good.write_text("prompt\tcategory\na red cube\tColors\n", encoding="utf-8")
    call_command("import_prompts", "cubes", str(good))
    assert "imported 1 prompts" in capsys.readouterr().out
    bad = tmp_path / "bad.tsv"
    bad.write_text("prompt\n\n \n", encoding="utf-8")
    bad.write_bytes(b"prompt\tcategory\nx\ty\tz\n")
    with pytest.raises(CommandError, match="line 2: 3 column"):
        call_command("import_prompts", "bad", str(bad))
    with pytest.raises(CommandError, match="cannot read"):
        call_command("import_prompts", "missing", str(tmp_path / "nope.tsv"))
