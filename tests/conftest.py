"""Test set-up shared by every test: Django settings, a temporary MEDIA_ROOT, staff users.

The suite runs against ``DATABASE_URL`` when it is set (CI: the machine's PostgreSQL) and
against the embedded PostgreSQL otherwise; there is no other database engine.
"""

import os
import shutil

import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studyapp.settings")


CHROMIUM = "/usr/bin/chromium"


def chromium_or_skip():
    """Browser tests need Debian's chromium. Missing on CI is a failure, locally a skip."""
    if shutil.which(CHROMIUM) or os.path.exists(CHROMIUM):
        return CHROMIUM
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed: `apt-get install -y chromium` (.ci/run does this)")
    pytest.skip("chromium is not installed: `apt-get install -y chromium` to run browser tests")


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MEDIA_ROOT.mkdir()


@pytest.fixture
def one_torch_thread():
    """Render in tests with one intra-op thread: the test machines are small and shared, and
    threads fighting over two cores made tiny guided steps 10-80x slower."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user("researcher", password="pw-for-tests", is_staff=True)


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def round_config():
    """A small valid round config; tests copy and change it."""
    return {
        "name": "test round",
        "prompt_set": "drawbench",
        "prompt_limit": 4,
        "objectives": ["ITC", "CAP", "SHIFT", "BLEND"],
        "seeds_per_prompt": 2,
        "comparisons": "shift-vs-baselines",
        "votes_per_item": 3,
        "trials_per_annotator": 10,
        "attention_check_rate": 0.1,
        "generation": {},
    }
