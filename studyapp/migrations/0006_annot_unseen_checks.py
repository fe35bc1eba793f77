"""Attention checks and practice from images the annotator has not seen
(studyapp/sql/annotate_0006_unseen_checks.sql). Reversing restores the 0005 functions."""

from pathlib import Path

from django.db import migrations

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
SQL = (SQL_DIR / "annotate_0006_unseen_checks.sql").read_text()
REVERSE = """
DROP FUNCTION IF EXISTS studyapp_trial_next(bigint, text, text, timestamptz, int[], boolean, text, text, bigint[], bigint[],
                                            text, text, int, float8);
DROP FUNCTION IF EXISTS studyapp_trial_next_id(bigint, text, text, timestamptz, int[], boolean, text, text, bigint[], bigint[],
                                               text, text, int, float8);
DROP FUNCTION IF EXISTS studyapp_gold_pick(bigint[], bigint[], bigint[], boolean);
""" + (SQL_DIR / "annotate_0005.sql").read_text()


class Migration(migrations.Migration):
    dependencies = [("studyapp", "0005_annotate_functions")]

    operations = [migrations.RunSQL(SQL, REVERSE)]
