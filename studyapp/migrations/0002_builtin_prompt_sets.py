"""Load the shipped prompt sets (DrawBench, COCO captions) on migrate."""

from django.db import migrations


def load(apps, schema_editor):
    from studyapp.services.prompts import BUILTIN_SETS, DATA_DIR, parse_prompt_file

    PromptSet = apps.get_model("studyapp", "PromptSet")
    Prompt = apps.get_model("studyapp", "Prompt")
    for spec in BUILTIN_SETS:
        if PromptSet.objects.filter(name=spec.name).exists():
            continue
        parsed = parse_prompt_file((DATA_DIR / spec.file).read_bytes(), filename=spec.file)
        ps = PromptSet.objects.create(name=spec.name, title=spec.title, source=spec.source, builtin=True)
        Prompt.objects.bulk_create(
            Prompt(prompt_set=ps, position=i, text=p.text, category=p.category, external_id=p.external_id)
            for i, p in enumerate(parsed)
        )


class Migration(migrations.Migration):
    dependencies = [("studyapp", "0001_initial")]
    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
