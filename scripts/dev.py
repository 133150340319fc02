#!/usr/bin/env python3
"""``make run``: prepare the embedded default and run web, Celery worker and beat together.

1. ``migrate``, ``seed_demo`` (its logins are shown again once the app answers),
   ``collectstatic`` (skipped when no static source changed since the last run).
2. Starts gunicorn (``config.wsgi``), a real Celery worker (prefork) and Celery beat, each
   in its own process group, their output prefixed with ``[web]``, ``[worker]``, ``[beat]``
   and copied to ``var/log/<name>.log``.
3. Prints the URL and the demo logins once ``/healthz`` answers.
4. Supervises them: a child that dies (a crash, an OOM kill, a SIGKILL) is started again
   after a backoff (1 s, 2 s, 4 s ... 30 s; reset once it has run for a minute), with a
   ``[dev]`` line saying which and why; the others keep running. Only Ctrl-C (or SIGTERM)
   stops the stack. Restarts are counted in ``var/log/supervisor.json`` (the soak test reads it).

Run with the project's virtualenv Python: ``.venv/bin/python scripts/dev.py [--host H --port P]``.
Environment variables (``DATABASE_URL``, ``CELERY_BROKER_URL``, ...) pass through. ``DEBUG``
defaults to false, as in production (styled error pages, static files from WhiteNoise); only
the TLS-only settings (secure cookies, HSTS) are relaxed, since the demo is served over HTTP.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
STOP_GRACE_SECONDS = 10
LOGIN_LINE = re.compile(r"^\S+ / \S+$")
_print_lock = threading.Lock()


def say(message: str = "") -> None:
    with _print_lock:
        print(message, flush=True)


def manage(*args: str, env: dict, capture: bool = False) -> str:
    """Run a manage.py command in the foreground; exit on failure."""
    say(f"[dev] manage.py {' '.join(args)}")
    result = subprocess.run(
        [PY, "manage.py", *args],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.STDOUT if capture else None,
        check=False,
    )
    if capture and result.stdout:
        say(result.stdout.rstrip())
    if result.returncode != 0:
        say(f"[dev] manage.py {args[0]} failed with exit status {result.returncode}")
        sys.exit(result.returncode)
    return result.stdout or ""


class Child:
    """One supervised process in its own process group, its output prefixed and logged.

    ``start()`` may be called again after the process died: the supervisor restarts it.
    """

    def __init__(self, name: str, argv: list[str], env: dict, log_dir: Path, on_line=None):
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.on_line = on_line
        self.restarts = 0
        self.proc: subprocess.Popen | None = None
        self.reader: threading.Thread | None = None
        self.started_at = 0.0

    def start(self) -> None:
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            start_new_session=True,  # Ctrl-C reaches only the supervisor, which forwards it
        )
        self.reader = threading.Thread(target=self._pump, args=(self.proc,), daemon=True)
        self.reader.start()

    def _pump(self, proc: subprocess.Popen) -> None:
        with self.log_path.open("a", encoding="utf-8") as log:
            for line in proc.stdout:
                line = line.rstrip("\n")
                log.write(line + "\n")
                log.flush()
                say(f"[{self.name}] {line}")
                if self.on_line:
                    self.on_line(line)

    def poll(self):
        return self.proc.poll()

    def terminate(self) -> None:
        """SIGTERM to the main process only: gunicorn and Celery stop their own children."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to the whole process group, children included."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def describe_exit(status: int) -> str:
    if status < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-status).name}"
        return f"was killed by signal {-status}"
    return f"exited with status {status}"


class Supervisor:
    """Restarts children that die, with backoff; records restarts in a JSON state file."""

    BACKOFF_FIRST = 1.0
    BACKOFF_MAX = 30.0
    STABLE_AFTER = 60.0  # a child that ran this long starts again from the first backoff

    def __init__(self, children: list[Child], state_path: Path):
        self.children = children
        self.state_path = state_path
        self.backoff = {c.name: self.BACKOFF_FIRST for c in children}
        self.restart_at: dict[str, float] = {}
        self.events: list[dict] = []

    def write_state(self) -> None:
        state = {
            "supervisor_pid": os.getpid(),
            "children": {
                c.name: {"pid": c.proc.pid if c.proc else None, "restarts": c.restarts,
                         "running": c.proc is not None and c.proc.poll() is None}
                for c in self.children
            },
            "restarts": sum(c.restarts for c in self.children),
            "events": self.events[-100:],
        }  # fmt: skip
        temp = self.state_path.with_suffix(".tmp")
        temp.write_text(json.dumps(state, indent=2))
        os.replace(temp, self.state_path)

    def tick(self) -> None:
        """One supervision step: notice deaths, schedule restarts, start those that are due."""
        now = time.monotonic()
        for child in self.children:
            if child.name in self.restart_at:
                if now >= self.restart_at[child.name]:
                    del self.restart_at[child.name]
                    child.restarts += 1
                    child.start()
                    say(f"[dev] {child.name} restarted (pid {child.proc.pid}, "
                        f"restart #{child.restarts})")  # fmt: skip
                    self.write_state()
                continue
            status = child.poll()
            if status is None:
                continue
            child.kill()  # what the dead leader left behind in its group (prefork children)
            if now - child.started_at >= self.STABLE_AFTER:
                self.backoff[child.name] = self.BACKOFF_FIRST
            delay = self.backoff[child.name]
            self.backoff[child.name] = min(delay * 2, self.BACKOFF_MAX)
            self.restart_at[child.name] = now + delay
            self.events.append({"child": child.name, "status": status, "at": time.time()})
            say(f"[dev] {child.name} (pid {child.proc.pid}) {describe_exit(status)}: "
                f"restarting it in {delay:g}s; the others keep running")  # fmt: skip
            self.write_state()


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def wait_for_http(url: str, timeout: float, tick, stopping: threading.Event) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stopping.is_set():
        tick()  # keep supervising while waiting
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - local URL
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        stopping.wait(0.5)
    return False


def collectstatic(env: dict) -> None:
    """``collectstatic`` when a static source or the lock changed since the last run.

    With DEBUG off, WhiteNoise serves only collected files. Without pre-compression
    (STATIC_COMPRESS=false, set above) it copies ~500 files in a few seconds; a stamp in
    STATIC_ROOT skips even that when nothing changed."""
    static_root = Path(env.get("STATIC_ROOT", ROOT / "staticfiles"))
    stamp = static_root / ".make-run-stamp"
    sources = [ROOT / "requirements.lock", ROOT / "config" / "settings.py"]
    sources += [p for p in (ROOT / "static").rglob("*") if p.is_file()]
    newest = max((p.stat().st_mtime for p in sources if p.exists()), default=0)
    if stamp.exists() and stamp.stat().st_mtime >= newest:
        say("[dev] static files are up to date (collectstatic skipped)")
        return
    manage("collectstatic", "--noinput", "--verbosity", "0", env=env)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.touch()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--worker-pool", default="prefork", choices=["prefork", "threads", "solo"])
    parser.add_argument("--skip-setup", action="store_true", help="no migrate/seed/collectstatic")
    args = parser.parse_args()

    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # Production-like: DEBUG off (styled error pages, JSON errors under /api/). The demo is
    # plain HTTP, so the TLS-only settings that DEBUG=false turns on are relaxed.
    env.setdefault("DEBUG", "false")
    env.setdefault("STATIC_COMPRESS", "false")  # collectstatic in seconds, not minutes
    if env["DEBUG"].lower() in ("0", "false", "no", "off", ""):
        env.setdefault("SESSION_COOKIE_SECURE", "false")
        env.setdefault("CSRF_COOKIE_SECURE", "false")
        env.setdefault("SECURE_HSTS_SECONDS", "0")
        env.setdefault("SECURE_SSL_REDIRECT", "false")
    env["PYTHONUNBUFFERED"] = "1"
    var_dir = Path(env.get("VAR_DIR", ROOT / "var"))
    log_dir = var_dir / "log"
    log_dir.mkdir(parents=True, exist_ok=True)

    if not port_is_free(args.host, args.port):
        say(f"[dev] {args.host}:{args.port} is already in use; try `make run PORT=8001`.")
        return 1

    seed_output = ""
    if not args.skip_setup:
        manage("migrate", "--noinput", env=env)
        seed_output = manage("seed_demo", env=env, capture=True)
        # Anchor the audit chain now rather than at beat's first tick (docs/AUDIT.md). A
        # refusal (say, var/checkpoints kept from a deleted database) is shown, not fatal.
        subprocess.run(
            [PY, "manage.py", "publish_checkpoint", "--reason", "release"],
            cwd=ROOT,
            env=env,
            check=False,
        )
        collectstatic(env)

    stopping = threading.Event()

    def request_stop(signum, _frame):
        if not stopping.is_set():
            say(f"\n[dev] {signal.Signals(signum).name} received: stopping web, worker and beat")
        stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, request_stop)

    def watch_worker(line: str) -> None:
        if " ready." in line:
            say("[dev] Celery worker is ready")

    bind = f"[{args.host}]:{args.port}" if ":" in args.host else f"{args.host}:{args.port}"
    web_argv = [PY, "-m", "gunicorn", "config.wsgi:application", "--bind", bind]
    web_argv += f"--workers {args.web_workers} --threads 4 --timeout 120".split()
    web_argv += ["--access-logfile", str(log_dir / "access.log"), "--error-logfile", "-"]
    worker_argv = [PY, "-m", "celery", "-A", "config", "worker", "--pool", args.worker_pool]
    worker_argv += f"--concurrency {args.worker_concurrency} --loglevel INFO".split()
    worker_argv += ["--hostname", "dev-worker@%h", "--without-mingle", "--without-gossip"]
    # The default queue and live-decision grading (docs/MONITORING.md).
    worker_argv += ["-Q", "celery,monitoring"]
    beat_argv = [PY, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO"]
    beat_argv += ["--schedule", str(var_dir / "celerybeat-schedule")]
    children = [
        Child("web", web_argv, env, log_dir),
        Child("worker", worker_argv, env, log_dir, on_line=watch_worker),
        Child("beat", beat_argv, env, log_dir),
    ]
    for child in children:
        child.start()
    say(f"[dev] started web (pid {children[0].proc.pid}), worker (pid {children[1].proc.pid}), "
        f"beat (pid {children[2].proc.pid}); logs in {log_dir}")  # fmt: skip

    shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host  # noqa: S104
    if ":" in shown_host:
        shown_host = f"[{shown_host}]"
    url = f"http://{shown_host}:{args.port}/"
    supervisor = Supervisor(children, log_dir / "supervisor.json")
    supervisor.write_state()
    if wait_for_http(url + "healthz", timeout=60, tick=supervisor.tick, stopping=stopping):
        logins = [line for line in seed_output.splitlines() if LOGIN_LINE.match(line.strip())]
        token = [line for line in seed_output.splitlines() if line.startswith("Pipeline API")]
        rule = "=" * 72
        banner = [rule, f"  Protocol-change manager: {url}", f"  API docs: {url}api/docs/"]
        if logins:
            banner.append("  Demo logins (username / password; for the demo only):")
            banner += [f"    {line.strip()}" for line in logins]
        banner += [f"  {line}" for line in token]
        banner += ["  Web, Celery worker and beat are running. Ctrl-C stops all three.", rule]
        say("\n".join(banner))

    while not stopping.is_set():
        supervisor.tick()
        stopping.wait(0.5)

    for child in children:
        child.terminate()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in children:
        try:
            child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"[dev] {child.name} did not stop in {STOP_GRACE_SECONDS}s: killing it")
            child.kill()
            child.proc.wait()
        child.kill()  # whatever the main process left behind in its group
        child.reader.join(timeout=2)
    supervisor.write_state()
    restarts = ", ".join(f"{c.name} {c.restarts}" for c in children)
    say(f"[dev] restarts during this run: {restarts}")
    say("[dev] stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
