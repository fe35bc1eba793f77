"""The annotator hot path as PostgreSQL functions (studyapp/sql/annotate_0005.sql).

The file is this migration's own: a later change to the functions goes in a new SQL file and a
new migration, so every database, migrated from scratch or step by step, ends up the same.
"""

from pathlib import Path

from django.db import migrations

SQL = (Path(__file__).resolve().parent.parent / "sql" / "annotate_0005.sql").read_text()
DROP = """
DROP FUNCTION IF EXISTS studyapp_trial_answer(bigint, text, text, int, timestamptz, text, text, int, int, int, int);
DROP FUNCTION IF EXISTS studyapp_trial_next(bigint, text, text, timestamptz, int[], boolean, text, text, bigint, bigint,
                                            bigint, text, text, int, float8);
DROP FUNCTION IF EXISTS studyapp_trial_next_id(bigint, text, text, timestamptz, int[], boolean, text, text, bigint, bigint,
                                               bigint, text, text, int, float8);
DROP FUNCTION IF EXISTS studyapp_gold_trial(bigint, text, text, int, timestamptz, int, bigint, bigint, bigint, text, text, text);
DROP FUNCTION IF EXISTS studyapp_annotator_complete(bigint, timestamptz);
DROP FUNCTION IF EXISTS studyapp_annotator_qc(bigint);
DROP FUNCTION IF EXISTS studyapp_annotator_locked(bigint, text, text);
"""


class Migration(migrations.Migration):
    dependencies = [("studyapp", "0004_item_allocation_order")]

    operations = [migrations.RunSQL(SQL, DROP)]
