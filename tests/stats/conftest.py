"""The statistics tests need no database and no Django settings.

``tests/conftest.py`` has an autouse fixture that sets Django's MEDIA_ROOT through
pytest-django's ``settings`` fixture; overriding it here by name lets this folder run with the
Django plugin disabled (``python -m pytest tests/stats -p no:django``) as well as with it.
"""

import pytest


@pytest.fixture(autouse=True)
def _media_root():
    yield
