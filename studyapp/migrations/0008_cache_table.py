"""The database cache table of settings.CACHES (shared by every server process)."""

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


def drop_cache_table(apps, schema_editor):
    schema_editor.execute("DROP TABLE IF EXISTS studyapp_cache")


class Migration(migrations.Migration):
    dependencies = [("studyapp", "0007_merge_0006_annot_unseen_checks_0006_sec_append_only")]
    operations = [migrations.RunPython(create_cache_table, drop_cache_table)]
