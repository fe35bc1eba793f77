"""Several worker machines share an S3-compatible bucket (django-storages' S3Storage): a real Celery
worker renders a round into a real S3 API server (moto's standalone server, a subprocess on a free
port), and the orphan check and deletes work on it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid

import pytest

from tests.e2e.test_celery_render import (  # noqa: F401
    Workers, assert_complete_without_orphans, child_env, enqueue, queue, redis_client, round_ready, tiny_round, wait_for,
    workers,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
boto3 = pytest.importorskip("boto3")
pytest.importorskip("storages")
pytest.importorskip("moto")

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_server(tmp_path):
    port = free_port()
    log = open(tmp_path / "moto.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"moto server did not start: {(tmp_path / 'moto.log').read_text()[-2000:]}")
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def bucket(s3_server, settings, monkeypatch):
    for k, v in CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    name = f"renders-{uuid.uuid4().hex[:8]}"
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    client.create_bucket(Bucket=name)
    # This process (the web side) uses the same bucket; Django resets default_storage on change.
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
        "bucket_name": name, "endpoint_url": s3_server, "region_name": "us-east-1", "file_overwrite": False,
        "default_acl": None}}}
    return client, name, s3_server


def keys(client, name) -> set[str]:
    return {o["Key"] for o in client.list_objects_v2(Bucket=name).get("Contents", [])}


def test_worker_renders_into_s3_and_orphans_and_deletes_work_there(workers, child_env, tiny_round, bucket, tmp_path):
    client, name, url = bucket
    child_env.update(CREDENTIALS, STORAGE_BACKEND="storages.backends.s3.S3Storage", S3_BUCKET=name, S3_ENDPOINT_URL=url)
    child_env["MEDIA_ROOT"] = str(tmp_path / "must-stay-empty")
    enqueue(child_env, tiny_round.pk)
    workers.start()
    wait_for(lambda: round_ready(tiny_round), timeout=180, what="the round to be rendered into S3", workers=workers)

    renders = assert_complete_without_orphans(tiny_round)  # the listing comes from the bucket
    assert keys(client, name) == {r.image.name for r in renders}
    assert not (tmp_path / "must-stay-empty").exists() or not any((tmp_path / "must-stay-empty").rglob("*.png"))
    body = client.get_object(Bucket=name, Key=renders[0].image.name)["Body"].read()
    assert body.startswith(b"\x89PNG")

    # The orphan check sees a stray object (a crashed worker's file) in the bucket ...
    from studyapp.storage import render_file_delete, render_file_write, render_files_listed

    stray = render_file_write(body)
    assert stray in keys(client, name) and render_files_listed() == {r.image.name for r in renders} | {stray}
    # ... and the delete removes it from the bucket; deleting a missing key never raises.
    render_file_delete(stray)
    render_file_delete(stray)
    assert keys(client, name) == {r.image.name for r in renders} == render_files_listed()

    # The staff image view reads from the bucket too.
    from django.test import Client
    from django.contrib.auth import get_user_model

    staff = get_user_model().objects.create_user("s3staff", password="pw-s3-123", is_staff=True)
    c = Client()
    c.force_login(staff)
    resp = c.get(f"/research/renders/{renders[0].pk}/image.png")
    assert resp.status_code == 200 and b"".join(resp.streaming_content) == body
