"""Decode the next samples' frames in worker processes while the model works on this one.

Why processes, and why this small pool rather than `concurrent.futures`:
- Decoding is CPU work in C (FFmpeg, PIL); in other processes it overlaps generation, so
  a run's wall time approaches max(decode, model) instead of their sum.
- A decode can hang (a stream that never ends) or crash (a bad file that kills FFmpeg). A
  worker process can be abandoned: when a sample's deadline passes, its worker is killed
  and replaced, that sample becomes an error record, and the run goes on. A
  ProcessPoolExecutor cannot kill one task without breaking the whole pool.
- Results come back in sample order through a bounded window (at most `ahead` samples
  decoded ahead of the one in use), so memory stays bounded and resume keeps its meaning:
  a record is written only for the sample in use, in order.

`Prefetcher(jobs, fn, workers=0)` decodes inline, in the caller (no overlap, no way to
abandon a stuck decode): the baseline of `bench/bench_prefetch.py`. Workers are forked
(no re-import of the caller's script); the runner forks them before it loads the model.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections import deque
from multiprocessing.connection import wait

from rler_eval.errors import RlerError


class DecodeTimeout(RlerError):
    """A decode ran past the sample's deadline; its worker was killed."""


class WorkerFailed(RlerError):
    """A decode worker died (for example FFmpeg crashed on a bad file)."""


class Failure:
    """An exception raised in a worker, carried back as text (tracebacks stay in the worker)."""

    def __init__(self, kind: str, message: str, user_error: bool):
        self.kind, self.message, self.user_error = kind, message, user_error

    def exception(self) -> Exception:
        from rler_eval import errors

        cls = getattr(errors, self.kind, None) or globals().get(self.kind)
        if isinstance(cls, type) and issubclass(cls, RlerError):
            return cls(self.message)
        return (RlerError if self.user_error else RuntimeError)(f"{self.kind}: {self.message}")


def _worker(conn, fn) -> None:
    """Worker loop: receive (index, job), send back (index, result or Failure)."""
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        index, job = msg
        try:
            result = fn(job)
        except Exception as e:  # noqa: BLE001 - every failure goes back to the runner as data
            result = Failure(type(e).__name__, str(e), isinstance(e, RlerError))
        conn.send((index, result))


class _Worker:
    def __init__(self, ctx, fn):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, fn), daemon=True)
        self.proc.start()
        child.close()
        self.job: int | None = None  # index in flight

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(5)
        self.conn.close()


class Prefetcher:
    """Ordered, bounded, abandonable parallel map of `fn` over `jobs`.

    `get(i, timeout)` returns fn(jobs[i]), raises what fn raised (rebuilt from its
    message), or raises DecodeTimeout when job i is not done within `timeout` seconds.
    Jobs are consumed in order: i = 0, 1, 2, ... A job that is None yields None.
    """

    def __init__(self, jobs: list, fn, workers: int = 1, ahead: int | None = None):
        self.jobs, self.fn, self.n = jobs, fn, max(0, workers)
        self.ahead = ahead if ahead is not None else 2 * self.n
        self.ready: dict[int, object] = {}
        self.todo = deque(i for i, j in enumerate(jobs) if j is not None)
        self.next_get = 0
        # fork: no re-import of the caller's __main__ (scripts need no main guard); the
        # runner starts the pool before it loads the model, so the children stay small
        self.ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        self.workers = [_Worker(self.ctx, fn) for _ in range(self.n)]

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for w in self.workers:
            if w.job is not None:
                w.kill()
                continue
            try:
                w.conn.send(None)
            except OSError:
                pass
            w.proc.join(2)
            if w.proc.is_alive():
                w.kill()
        self.workers = []

    def get(self, i: int, timeout: float | None = None):
        if i != self.next_get:
            raise ValueError(f"jobs must be consumed in order: expected {self.next_get}, got {i}")
        self.next_get = i + 1
        if self.jobs[i] is None:
            return None
        if self.n == 0:
            return self.fn(self.jobs[i])
        deadline = None if timeout is None else time.monotonic() + timeout
        while i not in self.ready:
            self._assign()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                self._abandon(i)
                raise DecodeTimeout(f"decoding took longer than the sample timeout ({timeout:g} s); "
                                    f"its worker was stopped")
            self._collect(remaining)
        result = self.ready.pop(i)
        self._assign()  # keep the workers busy while the caller uses this result
        if isinstance(result, Failure):
            raise result.exception()
        return result

    def _assign(self) -> None:
        for w in self.workers:
            if w.job is None and self.todo and self.todo[0] < self.next_get + self.ahead:
                w.job = self.todo.popleft()
                w.conn.send((w.job, self.jobs[w.job]))

    def _collect(self, timeout: float | None) -> None:
        busy = {w.conn: w for w in self.workers if w.job is not None}
        for conn in wait(list(busy), timeout):
            w = busy[conn]
            try:
                index, result = conn.recv()
            except (EOFError, OSError):
                index = w.job
                result = Failure("WorkerFailed", f"the decode worker died (exit code {w.proc.exitcode})", True)
                self._replace(w)
            else:
                w.job = None
            self.ready[index] = result

    def _abandon(self, i: int) -> None:
        for w in self.workers:
            if w.job == i:
                self._replace(w)

    def _replace(self, w: _Worker) -> None:
        w.kill()
        self.workers[self.workers.index(w)] = _Worker(self.ctx, self.fn)
