"""Databases migrated before the toy world's prompt set shipped get it too (the loader is idempotent)."""

from django.db import migrations

from studyapp.migrations import _builtin_loader


class Migration(migrations.Migration):
    dependencies = [("studyapp", "0002_builtin_prompt_sets")]
    operations = [migrations.RunPython(_builtin_loader.load, migrations.RunPython.noop)]
