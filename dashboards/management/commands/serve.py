"""`manage.py serve`: the whole product in one process, for the embedded default.

daphne serves HTTP and websockets on the main thread (it owns the signals); a Celery worker
consumes the in-process `memory://` broker in a thread, and Celery beat runs exactly
`config.schedules.BEAT_SCHEDULE` in another thread, publishing to that same in-process queue.
Production runs the three as separate processes instead (Procfile, `make run-prod`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from celery import Celery
from celery.beat import EmbeddedService
from celery.worker import WorkController
from celery.worker import state as worker_state
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

logger = logging.getLogger(__name__)

# A warm shutdown lets the running task finish; past this we stop waiting for it.
STOP_TIMEOUT_SECONDS = 15.0
MEMORY_POLL_SECONDS = 0.1


class EmbeddedWorker:
    """A Celery worker (solo pool) in a daemon thread of this process."""

    def __init__(self, app: Celery) -> None:
        self._ready = threading.Event()
        self.controller = WorkController(
            app=app,
            pool="solo",
            concurrency=1,
            hostname=f"embedded@{socket.gethostname()}",
            # One worker in one process: no cluster chatter to do.
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            ready_callback=lambda consumer: self._ready.set(),
        )
        self._thread = threading.Thread(target=self.controller.start, name="celery-worker", daemon=True)

    def start(self, *, timeout: float = 30.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise CommandError(_("The embedded Celery worker did not start within %d s.") % timeout)

    def stop(self) -> None:
        # The worker's loop checks this flag every cycle and shuts down warm (the
        # running task finishes, its message is acknowledged).
        worker_state.should_stop = 0
        self._thread.join(STOP_TIMEOUT_SECONDS)
        if self._thread.is_alive():
            logger.warning("embedded worker still busy after %.0f s; leaving it", STOP_TIMEOUT_SECONDS)
        worker_state.should_stop = None


class EmbeddedBeat:
    """Celery beat in a daemon thread, with the in-memory scheduler over the app's schedule."""

    def __init__(self, app: Celery) -> None:
        self._thread = EmbeddedService(app, thread=True, scheduler_cls=app.conf.beat_scheduler)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()
        self._thread.join(STOP_TIMEOUT_SECONDS)


def run_daphne(*, host: str, port: int) -> None:
    """daphne on the main thread, so that Ctrl-C and SIGTERM stop its reactor."""
    from daphne.cli import CommandLineInterface

    module, _dot, attribute = settings.ASGI_APPLICATION.rpartition(".")
    CommandLineInterface().run(["--bind", host, "--port", str(port), f"{module}:{attribute}"])


class Command(BaseCommand):
    help = _(
        "Start the whole product in one process for the embedded default (no DATABASE_URL): "
        "daphne serving HTTP and websockets on --host:--port, a Celery worker and Celery beat "
        "in threads over the in-process broker. With DATABASE_URL set (production shape) it "
        "refuses: run daphne, the Celery worker and beat as separate processes with "
        "`make run-prod` (see the Procfile)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help=_("Address to listen on."))
        parser.add_argument("--port", type=int, default=8000, help=_("Port to listen on."))

    def handle(self, *args: object, host: str, port: int, **options: object) -> None:
        if not settings.EMBEDDED:
            raise CommandError(
                _(
                    "DATABASE_URL is set: this is the production shape, where daphne, the Celery "
                    "worker and Celery beat run as separate processes. Use `make run-prod` "
                    "(Procfile) instead of `manage.py serve`."
                )
            )
        if not 0 < port < 65536:
            raise CommandError(_("--port must be between 1 and 65535, not %d.") % port)
        _refuse_if_taken(host, port)

        from config.celery import app

        app.finalize()
        app.set_default()
        if app.conf.broker_url.startswith("memory://"):
            # The in-memory queue is polled, once a second by default: a task enqueued by a
            # page would wait up to that long. Polling an in-process queue costs nothing.
            app.conf.broker_transport_options = {
                **app.conf.broker_transport_options,
                "polling_interval": MEMORY_POLL_SECONDS,
            }
        worker = EmbeddedWorker(app)
        beat = EmbeddedBeat(app)
        worker.start()
        beat.start()
        self.stdout.write(
            _("Celery worker and beat running in-process (broker %(broker)s, %(count)d periodic tasks).")
            % {"broker": app.conf.broker_url, "count": len(app.conf.beat_schedule)}
        )
        self.stdout.write(
            _("Serving on http://%(host)s:%(port)d/ — Ctrl-C stops.") % {"host": host, "port": port}
        )
        self.stdout.flush()
        try:
            run_daphne(host=host, port=port)
        finally:
            self.stdout.write(_("Stopping the embedded worker and beat…"))
            beat.stop()
            worker.stop()


def _refuse_if_taken(host: str, port: int) -> None:
    """Fail before the worker and beat start, with a plain message (daphne only logs it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        if os.name != "nt":
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CommandError(
                _("Cannot listen on %(host)s:%(port)d (%(error)s); pick another --port.")
                % {"host": host, "port": port, "error": exc.strerror}
            ) from exc
