"""Load the shipped prompt sets (DrawBench, COCO captions, the toy world's) on migrate."""

from django.db import migrations

from studyapp.migrations import _builtin_loader


class Migration(migrations.Migration):
    dependencies = [("studyapp", "0001_initial")]
    operations = [migrations.RunPython(_builtin_loader.load, migrations.RunPython.noop)]
