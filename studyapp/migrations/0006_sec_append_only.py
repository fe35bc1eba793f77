"""Staff exclusions of annotators, and the study record made append-only in PostgreSQL
(studyapp/sql/append_only_0006.sql: triggers refusing deletes of votes, trials, annotators and
exclusions, and changes of an annotator's pseudonym or round)."""

from pathlib import Path

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

SQL = (Path(__file__).resolve().parent.parent / "sql" / "append_only_0006.sql").read_text()
DROP = """
DROP TRIGGER IF EXISTS studyapp_vote_no_delete ON studyapp_vote;
DROP TRIGGER IF EXISTS studyapp_trial_no_delete ON studyapp_trial;
DROP TRIGGER IF EXISTS studyapp_annotator_no_delete ON studyapp_annotator;
DROP TRIGGER IF EXISTS studyapp_annotatorexclusion_no_delete ON studyapp_annotatorexclusion;
DROP TRIGGER IF EXISTS studyapp_annotator_identity_fixed ON studyapp_annotator;
DROP TRIGGER IF EXISTS studyapp_annotatorexclusion_fixed ON studyapp_annotatorexclusion;
DROP FUNCTION IF EXISTS studyapp_refuse_delete();
DROP FUNCTION IF EXISTS studyapp_refuse_update();
"""


class Migration(migrations.Migration):

    dependencies = [
        ('studyapp', '0005_annotate_functions'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='AnnotatorExclusion',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('reason', models.CharField(max_length=500)),
                ('excluded_by_name', models.CharField(max_length=150)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('annotator', models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name='exclusion', to='studyapp.annotator')),
                ('excluded_by', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['created_at'],
                'constraints': [models.CheckConstraint(condition=models.Q(('reason', ''), _negated=True), name='exclusion_reason_not_empty'), models.CheckConstraint(condition=models.Q(('excluded_by_name', ''), _negated=True), name='exclusion_by_not_empty')],
            },
        ),
        migrations.RunSQL(SQL, DROP),
    ]
