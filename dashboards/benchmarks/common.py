"""What every benchmark shares: which code and machine measured, the profile printout, and
keeping on-commit tasks out of the timed process."""

from __future__ import annotations

import cProfile
import io
import os
import platform
import pstats
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings


def git_commit() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}{' (with uncommitted changes)' if dirty else ''}"


def machine(pg_version: str) -> dict:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "postgresql": pg_version,
        "platform": platform.platform(),
    }


def profile_text(profiler: cProfile.Profile, *, cumulative: int, tottime: int) -> str:
    """The hot spots, by cumulative then by own time."""
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(cumulative)
    stats.sort_stats("tottime").print_stats(tottime)
    return out.getvalue()


@contextmanager
def enqueue_for_real(celery_app) -> Iterator[None]:
    """On-commit tasks go to the broker, never run inline: with CELERY_TASK_ALWAYS_EAGER set
    they would run inside the timed code (a matching round counted with every ingest)."""
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = before
