"""``{% annotator_qc_table round %}``: the round's annotators with their attention-check QC,
for researchers (the stats engineer's dashboard has the full QC view)."""

from django import template

from studyapp.services.annotators import annotator_qc_rows

register = template.Library()


@register.inclusion_tag("annotate/_qc_table.html")
def annotator_qc_table(rnd):
    return {"rows": annotator_qc_rows(rnd), "round": rnd}
