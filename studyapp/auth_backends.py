"""Authentication backends: django-axes' lockout check in front of Django's own.

Every login through HTTP (the project's login page and the admin's) passes the request, and axes
refuses a locked-out user name or address before the password is checked. ``authenticate()``
called from code without a request (the test client's ``login()``, a shell) cannot be throttled
by address and is left to the next backend instead of raising.
"""

from axes.backends import AxesStandaloneBackend


class AxesLoginBackend(AxesStandaloneBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
