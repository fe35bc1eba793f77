"""The quickstart's embedded PostgreSQL: what happens when its user process is killed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_sigterm_runs_the_exit_handlers_that_stop_the_embedded_server():
    # A process that attached to the embedded server registers its cleanup with atexit (the wheel
    # does); SIGTERM must run it, or the server outlives its last user.
    code = textwrap.dedent(
        """
        import atexit, os, signal, sys, time
        from studyapp.embedded_db import _exit_cleanly_on_sigterm
        _exit_cleanly_on_sigterm()
        atexit.register(lambda: print("cleanup ran", flush=True))
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 128 + 15 and "cleanup ran" in proc.stdout, (proc.returncode, proc.stdout, proc.stderr)


def test_a_process_with_its_own_sigterm_handler_keeps_it():
    code = textwrap.dedent(
        """
        import signal
        from studyapp.embedded_db import _exit_cleanly_on_sigterm
        mine = lambda signum, frame: None
        signal.signal(signal.SIGTERM, mine)
        _exit_cleanly_on_sigterm()
        print(signal.getsignal(signal.SIGTERM) is mine)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "True", proc.stderr
