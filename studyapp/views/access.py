"""Who may see the researcher pages: active staff, sent to the platform's own login page (not
the admin's, which is where ``staff_member_required`` sends people by default)."""

from django.contrib.admin.views.decorators import staff_member_required

staff_required = staff_member_required(login_url="login")
