"""Load benchmark of the annotator API (run on demand, not part of the test suite).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python tests/benchmarks/bench_annotate.py [--annotators 50] [--workers 3] [--think-ms 300]

What it does, all on loopback and bounded in count and time:

1. creates a scratch database ``bench_annotate_<pid>`` on the DATABASE_URL server, migrates it,
   and prepares an open round (DrawBench, 200 prompts x 2 seeds x 3 SHIFT-vs-baseline pairs =
   1,200 items, 5 votes each; attention checks at 10%; no practice; min_view_ms 0);
2. starts gunicorn (gthread) on it, with persistent database connections (DB_CONN_MAX_AGE);
3. each simulated annotator goes through the real entry flow over HTTP (link, consent,
   comprehension check), then loops: ``GET api/next`` (allocation + a small JSON), think,
   ``POST api/answer`` (both answers in one submit). One keep-alive http.client connection
   per annotator, one thread each;
4. baseline: 1 annotator alone (no think time); load: ``--annotators`` at once;
5. compares the database with every answer the clients got acknowledged (lost = acknowledged but
   missing or different in the database; doubled = more than one vote per trial and criterion);
6. prints one JSON line per figure, ratios against the baseline, then drops the database.

Targets (issue): p99 < 100 ms for both requests at 50 concurrent annotators, >= 100 completed
trials/s, no vote lost.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

P99_TARGET_MS = 100.0
RATE_TARGET = 100.0


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))]


# -- database and round ----------------------------------------------------------------------


def create_database(base_url: str) -> str:
    import psycopg

    name = f"bench_annotate_{os.getpid()}"
    parts = urllib.parse.urlsplit(base_url)
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def drop_database(base_url: str, url: str) -> None:
    import psycopg

    name = urllib.parse.urlsplit(url).path.lstrip("/")
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def prepare_round() -> str:
    """Migrate, create and open the benchmark round; return its token."""
    import django
    from django.core.management import call_command

    django.setup()
    from django.core.files.storage import default_storage

    from studyapp.models import Render
    from studyapp.services.rounds import round_create, round_transition
    from tests.studyapp.factories import png_for

    call_command("migrate", verbosity=0)
    rnd = round_create(
        config={
            "name": "benchmark",
            "prompt_set": "drawbench",
            "prompt_limit": 200,
            "objectives": ["ITC", "CAP", "SHIFT", "BLEND"],
            "seeds_per_prompt": 2,
            "comparisons": "shift-vs-baselines",
            "votes_per_item": 5,
            "trials_per_annotator": 10_000,
            "attention_check_rate": 0.1,
            "practice_trials": 0,
            "min_view_ms": 0,
        }
    )
    renders = list(rnd.renders.all())
    for r in renders:
        r.image.name = default_storage.save(f"renders/{secrets.token_hex(10)}.png", _content(png_for(r)))
        r.status = Render.Status.DONE
        r.provenance = {}
    Render.objects.bulk_update(renders, ["image", "status", "provenance"], batch_size=500)
    round_transition(round_id=rnd.pk, to="ready")
    round_transition(round_id=rnd.pk, to="open")
    return rnd.token


def _content(data: bytes):
    from django.core.files.base import ContentFile

    return ContentFile(data)


def db_votes(token: str) -> dict:
    """(pseudonym, position) -> {criterion: [choice, ...]} for every vote of the round."""
    from studyapp.models import Vote

    out: dict = {}
    for pseudo, pos, crit, choice in Vote.objects.filter(trial__annotator__round__token=token).values_list(
        "trial__annotator__pseudonym", "trial__position", "criterion", "choice"
    ):
        out.setdefault((pseudo, pos), {}).setdefault(crit, []).append(choice)
    return out


# -- server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(env: dict, port: int, workers: int, threads: int) -> subprocess.Popen:
    cmd = [
        str(ROOT / ".venv" / "bin" / "gunicorn"), "studyapp.wsgi:application",
        "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--worker-class", "gthread",
        "--threads", str(threads), "--keep-alive", "10", "--log-level", "warning",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"gunicorn exited with {proc.returncode}")
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("gunicorn did not start within 30 s")


# -- simulated annotator -------------------------------------------------------------------------


class Annotator:
    def __init__(self, port: int, token: str, rng_seed: int):
        self.port, self.token = port, token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookies: dict[str, str] = {}
        self.fetch_ms: list[float] = []
        self.submit_ms: list[float] = []
        self.acked: dict[int, dict] = {}
        self.errors: list[str] = []
        self.pseudonym = ""
        import random

        self.rng = random.Random(rng_seed)

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes, float]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        data = None
        if body is not None:
            data = urllib.parse.urlencode(body)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["X-CSRFToken"] = self.cookies.get("csrftoken", "")
        t0 = time.perf_counter()
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                payload = resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The server closed an idle keep-alive connection: reconnect once (not counted as
                # an error; the request never reached a view).
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if attempt == 2:
                    raise
                t0 = time.perf_counter()
        ms = (time.perf_counter() - t0) * 1000
        for header, value in resp.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name.strip()] = rest.split(";", 1)[0]
        return resp.status, payload, ms

    def enter(self) -> None:
        """The real entry flow: link (CSRF cookie), consent (annotator cookie), comprehension check."""
        from studyapp.services.annotators import COMPREHENSION

        base = f"/a/{self.token}/"
        status, _, _ = self.request("GET", base)
        assert status == 200, status
        status, _, _ = self.request("POST", base + "consent/", {"consent": "yes"})
        assert status == 302, status
        answers = {f: correct for f, _q, _o, correct in COMPREHENSION}
        status, _, _ = self.request("POST", base + "check/", answers)
        assert status == 302, status
        self.pseudonym = self.cookies["annotator"].strip('"').split(":", 1)[0]

    def run(self, *, trials: int, think_ms: float, stop_at: float, ramp_ms: float = 0.0) -> None:
        base = f"/a/{self.token}/api/"
        if ramp_ms:
            time.sleep(self.rng.uniform(0, ramp_ms) / 1000)
        for _ in range(trials):
            if time.monotonic() > stop_at:
                return
            status, body, ms = self.request("GET", base + "next")
            if status != 200:
                self.errors.append(f"next {status} {body[:120]!r}")
                return
            self.fetch_ms.append(ms)
            trial = json.loads(body)["trial"]
            if trial is None:
                return
            if think_ms:
                time.sleep(self.rng.uniform(0.5, 1.5) * think_ms / 1000)
            answer = {
                "position": trial["position"],
                "realism": self.rng.choice(["left", "right", "tie"]),
                "alignment": self.rng.choice(["left", "right", "tie"]),
                "rt_realism": str(int(think_ms)),
                "rt_alignment": str(int(think_ms) + 10),
            }
            status, body, ms = self.request("POST", base + "answer", answer)
            if status != 200:
                self.errors.append(f"answer {status} {body[:120]!r}")
                continue
            self.submit_ms.append(ms)
            reply = json.loads(body)
            if reply.get("ok") and reply.get("outcome") in ("recorded", "unchanged"):
                self.acked[trial["position"]] = {"realism": answer["realism"], "alignment": answer["alignment"]}


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (Linux /proc), 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _cpu_times() -> list[int]:
    """The machine's aggregate CPU time counters (/proc/stat: user ... steal)."""
    try:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return [0] * 8


def server_pids(master: int, db_name: str) -> tuple[list[int], list[int]]:
    """gunicorn's workers and the PostgreSQL backends serving the benchmark database."""
    from django.db import connection

    try:
        with open(f"/proc/{master}/task/{master}/children") as f:
            workers = [int(x) for x in f.read().split()]
    except OSError:
        workers = []
    with connection.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [db_name])
        backends = [r[0] for r in cur.fetchall()]
    connection.close()
    return [master, *workers], backends


def phase(port: int, token: str, *, n: int, trials: int, think_ms: float, max_s: float, seed: int,
          ramp_ms: float = 0.0) -> dict:
    anns = [Annotator(port, token, seed + i) for i in range(n)]
    for a in anns:
        a.enter()
    stop_at = time.monotonic() + max_s
    start = threading.Barrier(n + 1)

    def body(a):
        start.wait()
        try:
            a.run(trials=trials, think_ms=think_ms, stop_at=stop_at, ramp_ms=ramp_ms)
        except Exception as exc:  # noqa: BLE001 - counted and reported
            a.errors.append(repr(exc))

    threads = [threading.Thread(target=body, args=(a,), daemon=True) for a in anns]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join(timeout=max_s + 60)
    elapsed = time.perf_counter() - t0
    for a in anns:
        a.conn.close()
    return {
        "annotators": anns,
        "elapsed_s": elapsed,
        "fetch_ms": [x for a in anns for x in a.fetch_ms],
        "submit_ms": [x for a in anns for x in a.submit_ms],
        "completed": sum(len(a.acked) for a in anns),
        "errors": [e for a in anns for e in a.errors],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--annotators", type=int, default=50)
    ap.add_argument("--trials", type=int, default=60, help="trials per annotator in the load phase")
    ap.add_argument("--baseline-trials", type=int, default=200)
    ap.add_argument("--think-ms", type=float, default=300.0, help="mean pause between fetch and submit (uniform 0.5x-1.5x)")
    ap.add_argument("--ramp-ms", type=float, default=None,
                    help="each annotator starts at a random offset in [0, ramp) (default: one mean think time), "
                         "so the load phase measures 50 annotators at work, not 50 first clicks in the same "
                         "millisecond; the 'burst' phase measures that case on its own")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--max-seconds", type=float, default=60.0, help="upper bound of the load phase")
    ap.add_argument("--keep-db", action="store_true")
    args = ap.parse_args()
    if args.ramp_ms is None:
        args.ramp_ms = args.think_ms
    if not 1 <= args.annotators <= 200 or not 1 <= args.trials <= 500 or args.max_seconds > 300:
        raise SystemExit("bounded on purpose: annotators 1..200, trials 1..500, max-seconds <= 300")

    base_url = os.environ.get("DATABASE_URL")
    if not base_url:
        raise SystemExit("set DATABASE_URL to a PostgreSQL server (a scratch database is created on it)")
    bench_url = create_database(base_url)
    media = tempfile.mkdtemp(prefix="bench_annotate_media_")
    env = {**os.environ, "DATABASE_URL": bench_url, "MEDIA_ROOT": media, "DEBUG": "false",
           "DB_CONN_MAX_AGE": "60", "DJANGO_SETTINGS_MODULE": "studyapp.settings", "LOG_LEVEL": "WARNING",
           # every simulated annotator comes from 127.0.0.1: lift the per-client creation limit
           "ANNOTATE_CREATE_LIMIT": "100000/600"}
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "MEDIA_ROOT", "DEBUG", "DJANGO_SETTINGS_MODULE", "LOG_LEVEL")})
    server = None
    try:
        t0 = time.perf_counter()
        token = prepare_round()
        emit(figure="setup_s", value=round(time.perf_counter() - t0, 2))
        port = free_port()
        server = start_gunicorn(env, port, args.workers, args.threads)
        common = {"workers": args.workers, "threads": args.threads, "cpus": os.cpu_count()}

        # Warm-up (imports, connections), not measured.
        phase(port, token, n=4, trials=5, think_ms=0, max_s=30, seed=10_000)
        base = phase(port, token, n=1, trials=args.baseline_trials, think_ms=0, max_s=60, seed=20_000)
        db_name = urllib.parse.urlsplit(bench_url).path.lstrip("/")
        load1_before = os.getloadavg()[0]
        web, backends = server_pids(server.pid, db_name)  # connections persist (DB_CONN_MAX_AGE), so backends too
        cpu0 = {pid: _cpu_s(pid) for pid in web + backends}
        client0 = time.process_time()
        machine0 = _cpu_times()
        load = phase(port, token, n=args.annotators, trials=args.trials, think_ms=args.think_ms,
                     max_s=args.max_seconds, seed=30_000, ramp_ms=args.ramp_ms)
        client_cpu = time.process_time() - client0
        machine = [b - a for a, b in zip(machine0, _cpu_times())]
        web_after, backends_after = server_pids(server.pid, db_name)
        web_cpu = sum(max(0.0, _cpu_s(pid) - cpu0.get(pid, 0.0)) for pid in set(web) | set(web_after))
        db_cpu = sum(max(0.0, _cpu_s(pid) - cpu0.get(pid, 0.0)) for pid in set(backends) | set(backends_after))
        server_cpu = web_cpu + db_cpu
        # CPU cost per completed trial (fetch + submit), whatever else the machine is doing; and
        # what two otherwise idle cores could sustain at that cost (server + this client).
        per_trial = (server_cpu + client_cpu) / max(1, load["completed"])
        emit(phase="load", figure="server_cpu_ms_per_trial", value=round(1000 * server_cpu / max(1, load["completed"]), 2),
             note="gunicorn master+workers and the PostgreSQL backends of the benchmark database")
        emit(phase="load", figure="web_cpu_ms_per_trial", value=round(1000 * web_cpu / max(1, load["completed"]), 2))
        emit(phase="load", figure="db_cpu_ms_per_trial", value=round(1000 * db_cpu / max(1, load["completed"]), 2))
        emit(phase="load", figure="client_cpu_ms_per_trial", value=round(1000 * client_cpu / max(1, load["completed"]), 2))
        emit(phase="load", figure="capacity_trials_per_s_2_idle_cores_est", value=round(2 / per_trial, 1) if per_trial else None)
        busy = sum(machine) - machine[3] - machine[4]  # all but idle and iowait
        emit(phase="load", figure="machine_cpu_busy_pct", value=round(100 * busy / max(1, sum(machine)), 1),
             steal_pct=round(100 * machine[7] / max(1, sum(machine)), 1),
             note="both cores over the load phase; steal: time the hypervisor gave to other machines")
        emit(figure="machine_load_average_1min", before=round(load1_before, 2), after=round(os.getloadavg()[0], 2),
             cpus=os.cpu_count(), note="other processes on the machine compete for the same cores")

        # The worst moment, on its own: every annotator's first fetch in the same instant (what a
        # synchronized start does), reported but not a target (annotators do not click in step).
        burst = phase(port, token, n=args.annotators, trials=1, think_ms=0, max_s=30, seed=40_000)
        emit(phase="burst", figure="simultaneous_first_fetch_max_ms", value=round(max(burst["fetch_ms"], default=0), 2),
             p50=round(pct(burst["fetch_ms"], 50), 2), annotators=args.annotators, **common)
        emit(phase="burst", figure="simultaneous_submit_max_ms", value=round(max(burst["submit_ms"], default=0), 2),
             p50=round(pct(burst["submit_ms"], 50), 2), annotators=args.annotators, **common)

        results = {}
        for label, ph, n, think in (("baseline", base, 1, 0.0), ("load", load, args.annotators, args.think_ms)):
            fig = {
                "fetch_p50_ms": pct(ph["fetch_ms"], 50),
                "fetch_p99_ms": pct(ph["fetch_ms"], 99),
                "submit_p50_ms": pct(ph["submit_ms"], 50),
                "submit_p99_ms": pct(ph["submit_ms"], 99),
                "trials_per_s": ph["completed"] / ph["elapsed_s"],
            }
            results[label] = fig
            for name, value in fig.items():
                emit(phase=label, figure=name, value=round(value, 2), annotators=n, think_ms=think,
                     requests=len(ph["fetch_ms"]) + len(ph["submit_ms"]), **common)
            emit(phase=label, figure="client_errors", value=len(ph["errors"]), sample=ph["errors"][:3])

        # Lost or doubled votes: the database against every acknowledged answer.
        votes = db_votes(token)
        acked = {(a.pseudonym, pos): ans for ph in (base, load, burst) for a in ph["annotators"] for pos, ans in a.acked.items()}
        lost = sum(1 for k, ans in acked.items() for c in ("realism", "alignment") if votes.get(k, {}).get(c) != [ans[c]])
        doubled = sum(1 for v in votes.values() for choices in v.values() if len(choices) > 1)
        emit(figure="acknowledged_votes", value=2 * len(acked))
        emit(figure="lost_votes", value=lost)
        emit(figure="doubled_votes", value=doubled)
        from studyapp.models import StudyRound
        from studyapp.services.allocation import items_consistency_problems

        problems = items_consistency_problems(round_id=StudyRound.objects.get(token=token).pk)
        emit(figure="item_counter_mismatches", value=len(problems), sample=problems[:3])

        for name in ("fetch_p50_ms", "fetch_p99_ms", "submit_p50_ms", "submit_p99_ms", "trials_per_s"):
            b = results["baseline"][name]
            emit(figure=f"{name}_ratio_load_vs_baseline", value=round(results["load"][name] / b, 2) if b else None)
        ok = (
            results["load"]["fetch_p99_ms"] < P99_TARGET_MS
            and results["load"]["submit_p99_ms"] < P99_TARGET_MS
            and results["load"]["trials_per_s"] >= RATE_TARGET
            and lost == 0 and doubled == 0 and not problems
        )
        emit(figure="targets_met", value=ok, p99_target_ms=P99_TARGET_MS, trials_per_s_target=RATE_TARGET)
        return 0
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        from django.db import connections

        connections.close_all()
        if not args.keep_db:
            drop_database(base_url, bench_url)
        shutil.rmtree(media, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
