"""End to end: real Celery worker processes, the Redis broker and PostgreSQL render a tiny round.

Each test uses its own queue name, so concurrent test runs sharing one Redis never cross. The
worker is a subprocess (`celery -A studyapp worker -Q <queue> -c 1 -P prefork`) pointed at this
test run's database through DATABASE_URL, and at this test's MEDIA_ROOT.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from generation.spec import GenerationSpec
from studyapp.models import Render, StudyRound
from studyapp.services.prompts import builtin_prompt_sets_load
from studyapp.services.rounds import round_create
from studyapp.storage import render_files_listed
from tests.dbutil import current_database_url

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

REPO = Path(__file__).resolve().parents[2]
BROKER_URL = os.environ.get("TEST_BROKER_URL", "redis://127.0.0.1:6379/0")
VISIBILITY_TIMEOUT = 5


@pytest.fixture
def redis_client():
    import redis

    client = redis.Redis.from_url(BROKER_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is not reachable at {BROKER_URL}: {exc}")
        pytest.skip(f"Redis is not reachable at {BROKER_URL} (set TEST_BROKER_URL): {exc}")
    yield client
    client.close()


@pytest.fixture
def queue(redis_client):
    name = f"render-test-{uuid.uuid4().hex[:12]}"
    yield name
    redis_client.delete(name)


@pytest.fixture
def child_env(settings, queue):
    env = {k: v for k, v in os.environ.items() if k not in ("TEST_DATABASE_NAME", "DJANGO_SETTINGS_MODULE")}
    env.update(
        DJANGO_SETTINGS_MODULE="studyapp.settings",
        DATABASE_URL=current_database_url(),
        CELERY_BROKER_URL=BROKER_URL,
        RENDER_QUEUE=queue,
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        RENDER_DEVICE="cpu",
        CUDA_VISIBLE_DEVICES="",
        OMP_NUM_THREADS="1",  # small shared test machines: no thread oversubscription
        BROKER_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT),
        RENDER_TASK_TIME_LIMIT="60",
        RENDER_TASK_SOFT_TIME_LIMIT="50",
        PYTHONPATH=str(REPO),
    )
    return env


class Workers:
    """Worker subprocesses, each in its own process group (killed as a whole)."""

    def __init__(self, env, queue, log_dir: Path):
        self.env, self.queue, self.log_dir, self.procs = env, queue, log_dir, []

    def start(self) -> subprocess.Popen:
        n = len(self.procs)
        log = open(self.log_dir / f"worker{n}.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "studyapp", "worker", "-Q", self.queue, "-c", "1", "-P", "prefork",
             "-n", f"{self.queue}-{n}@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
             "--without-heartbeat"],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name} ---\n" + p.read_text(errors="replace")[-4000:] for p in sorted(self.log_dir.glob("worker*.log"))
        )


@pytest.fixture
def workers(transactional_db, child_env, queue, tmp_path):
    w = Workers(child_env, queue, tmp_path)
    yield w
    for p in w.procs:
        w.kill(p)


@pytest.fixture
def tiny_round(round_config):
    builtin_prompt_sets_load()  # an earlier transactional test may have flushed them
    cfg = {**round_config, "name": "e2e", "prompt_limit": 2, "objectives": ["SHIFT", "ITC"], "seeds_per_prompt": 1,
           "generation": GenerationSpec.tiny(batch_size=2).to_dict()}
    return round_create(config=cfg)


def enqueue(env, round_id: int) -> str:
    out = subprocess.run(
        [sys.executable, "manage.py", "render_round", str(round_id)], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def wait_for(predicate, *, timeout: float, what: str, workers: Workers):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{workers.logs()}")


def round_ready(rnd):
    rnd.refresh_from_db()
    return rnd.status == StudyRound.Status.READY


def assert_complete_without_orphans(rnd):
    renders = list(Render.objects.filter(round=rnd))
    assert renders and all(r.status == Render.Status.DONE for r in renders)
    names = [r.image.name for r in renders]
    assert len(set(names)) == len(renders)  # one image per render
    assert set(names) == render_files_listed()  # and no other file in the storage
    for r in renders:
        p = r.provenance
        assert p["spec_hash"] == rnd.spec_hash and p["seed"] == r.seed and p["objective"] == r.objective
        assert p["checkpoints"] and p["code_version"] and "timings" in p and p["render_id"] == r.pk
        assert r.itc_score is not None and r.itm_score is not None and r.cap_score is not None
    return renders


def test_worker_renders_a_round_through_the_broker(workers, child_env, tiny_round):
    out = enqueue(child_env, tiny_round.pk)
    assert "4 render(s) queued in 2 task(s)" in out
    workers.start()
    wait_for(lambda: round_ready(tiny_round), timeout=120, what="the round to become ready", workers=workers)
    renders = assert_complete_without_orphans(tiny_round)
    assert all(r.attempts == 1 for r in renders)
    assert all(r.provenance["worker"].startswith(workers.queue) for r in renders)

    # Enqueueing the finished round again changes nothing.
    before = sorted(Render.objects.filter(round=tiny_round).values_list("pk", "image", "attempts", "finished_at"))
    out = enqueue(child_env, tiny_round.pk)
    assert "nothing to render: 4/4 done" in out
    time.sleep(1)
    assert sorted(Render.objects.filter(round=tiny_round).values_list("pk", "image", "attempts", "finished_at")) == before


def test_killed_worker_mid_task_then_a_new_worker_completes_the_round(workers, child_env, tiny_round):
    enqueue(child_env, tiny_round.pk)
    first = workers.start()
    running = wait_for(
        lambda: list(Render.objects.filter(round=tiny_round, status=Render.Status.RUNNING).values_list("pk", flat=True)),
        timeout=90, what="a render to be running", workers=workers,
    )
    workers.kill(first)  # SIGKILL to the whole process group: main process and its pool child
    killed_at = time.monotonic()
    # The killed task's renders stay "running"; no worker finishes them.
    time.sleep(1)
    assert set(running) <= set(Render.objects.filter(round=tiny_round, status=Render.Status.RUNNING).values_list("pk", flat=True))
    assert not round_ready(tiny_round)
    # The round page sees them as stalled once PostgreSQL has ended the dead worker's session.
    from studyapp.selectors_renders import render_progress

    wait_for(lambda: render_progress(tiny_round).stalled == len(running), timeout=10, what="stalled renders",
             workers=workers)

    # Redis gives the unacknowledged message back once its visibility timeout has passed; a worker
    # restores such messages when it starts.
    time.sleep(max(0.0, VISIBILITY_TIMEOUT + 1 - (time.monotonic() - killed_at)))
    workers.start()
    wait_for(lambda: round_ready(tiny_round), timeout=120, what="the round to become ready after the kill", workers=workers)
    renders = assert_complete_without_orphans(tiny_round)
    by_id = {r.pk: r for r in renders}
    assert all(by_id[pk].attempts == 2 for pk in running)  # reclaimed once, from the dead worker


def test_soft_time_limit_fails_the_renders_with_a_message(workers, child_env, tiny_round, round_config):
    # A first round warms the worker up (imports, lazy imports inside torch), as in production,
    # where a soft limit fires while sampling, not while importing.
    enqueue(child_env, tiny_round.pk)
    workers.start()
    wait_for(lambda: round_ready(tiny_round), timeout=120, what="the warm-up round", workers=workers)
    slow = round_create(config={**round_config, "name": "slow", "prompt_limit": 2, "objectives": ["SHIFT", "ITC"],
                                "seeds_per_prompt": 1,
                                "generation": GenerationSpec.tiny(batch_size=2, respacing="1000").to_dict()})
    files_before = render_files_listed()
    env = {**child_env, "RENDER_TASK_SOFT_TIME_LIMIT": "2", "RENDER_TASK_TIME_LIMIT": "60"}
    enqueue(env, slow.pk)  # the limits travel with each message
    wait_for(lambda: Render.objects.filter(round=slow, status=Render.Status.FAILED).count() == 4,
             timeout=120, what="every render to fail on the soft time limit", workers=workers)
    for r in Render.objects.filter(round=slow):
        assert "soft time limit (2 s)" in r.error and "RENDER_TASK_SOFT_TIME_LIMIT" in r.error and r.attempts == 1
    assert render_files_listed() == files_before


def test_hard_time_limit_is_retried_then_fails_after_max_attempts(workers, child_env, round_config):
    # The soft limit never fires: the pool process is killed at the hard limit every time. The
    # round samples 1000 steps so a unit always outlasts the 2 s limit, however fast the machine.
    builtin_prompt_sets_load()  # an earlier transactional test may have flushed them
    slow = round_create(config={**round_config, "name": "slow", "prompt_limit": 2, "objectives": ["SHIFT", "ITC"],
                                "seeds_per_prompt": 1,
                                "generation": GenerationSpec.tiny(batch_size=2, respacing="1000").to_dict()})
    child_env.update(RENDER_TASK_SOFT_TIME_LIMIT="0", RENDER_TASK_TIME_LIMIT="2", RENDER_MAX_ATTEMPTS="2")
    enqueue(child_env, slow.pk)
    workers.start()
    wait_for(lambda: Render.objects.filter(round=slow, status=Render.Status.FAILED).count() == 4,
             timeout=150, what="every render to fail after the hard time limit", workers=workers)
    for r in Render.objects.filter(round=slow):
        assert r.attempts == 2 and "stopped while rendering this image 2 times" in r.error
    assert not render_files_listed()
