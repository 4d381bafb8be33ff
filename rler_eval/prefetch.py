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

- A frame set is megabytes (16 frames of 640x360 are 11 MB). Pickled through a pipe it
  cost the runner 50-80 ms per question on 2 busy cores; a worker leaves large frame arrays
  in its own shared-memory block instead (one per worker, reused: see `to_shared`), and the
  runner copies them out (a few ms). The blocks are unlinked when the pool closes.

`Prefetcher(jobs, fn, workers=0)` decodes inline, in the caller (no overlap, no way to
abandon a stuck decode): the baseline of `bench/bench_prefetch.py`. Workers are forked
(no re-import of the caller's script); the runner forks them before it loads the model.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import threading
import time
from collections import deque
from multiprocessing import resource_tracker, shared_memory
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


SHARED_MIN_BYTES = 1 << 20  # frame arrays from this size go through shared memory


class SharedArray:
    """Where a worker left a result's `frames` array: its block's name and the array's layout.

    `retired` names the worker's previous block, which the runner may stop mapping."""

    def __init__(self, name: str, shape: tuple, dtype: str, retired: str | None = None):
        self.name, self.shape, self.dtype, self.retired = name, shape, dtype, retired


def to_shared(result, arena=None):
    """(`result` with a large `frames` array moved into `arena`, the arena used).

    Each worker keeps one block (its arena) and writes every result into it, growing it when
    a result is larger: creating a block and touching its pages cost about 10 ms per 11 MB
    here, a copy into warm pages about 1 ms. Reuse is safe because a worker gets its next
    job only after the runner has copied the last result out (`Prefetcher._receive`).
    """
    frames = getattr(result, "frames", None)
    if not dataclasses.is_dataclass(result) or getattr(frames, "nbytes", 0) < SHARED_MIN_BYTES:
        return result, arena
    import numpy as np

    retired = None
    if arena is None or arena.size < frames.nbytes:
        if arena is not None:
            retired = arena.name
            arena.close()
            arena.unlink()
        arena = shared_memory.SharedMemory(create=True, size=frames.nbytes)
    np.ndarray(frames.shape, frames.dtype, buffer=arena.buf)[...] = frames
    return dataclasses.replace(result, frames=SharedArray(arena.name, frames.shape, frames.dtype.str, retired)), arena


class Mappings:
    """The runner's side of the arenas: each block mapped once, unlinked at the end."""

    def __init__(self):
        self.blocks: dict[str, shared_memory.SharedMemory] = {}

    def copy_out(self, result):
        """`result` with its frames copied out of the worker's arena (the arena stays)."""
        frames = getattr(result, "frames", None)
        if not isinstance(frames, SharedArray):
            return result
        import numpy as np

        if frames.retired in self.blocks:
            self.blocks.pop(frames.retired).close()  # the worker unlinked it
        block = self.blocks.get(frames.name)
        if block is None:
            block = self.blocks[frames.name] = shared_memory.SharedMemory(name=frames.name)
        array = np.array(np.ndarray(frames.shape, np.dtype(frames.dtype), buffer=block.buf))
        return dataclasses.replace(result, frames=array)

    def close(self) -> None:
        for block in self.blocks.values():
            block.close()
            try:
                block.unlink()  # a worker's arena outlives the worker (it may have been killed)
            except FileNotFoundError:
                pass
        self.blocks = {}


def _worker(conn, fn) -> None:
    """Worker loop: receive (index, job), send back (index, result or Failure)."""
    arena = None
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        index, job = msg
        try:
            result, arena = to_shared(fn(job), arena)
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
        if self.n:  # one resource tracker for all: blocks a worker creates and the runner frees
            resource_tracker.ensure_running()
        self.mappings = Mappings()  # the workers' arenas, as the runner maps them
        self.workers = [_Worker(self.ctx, fn) for _ in range(self.n)]
        # a pump thread drains finished frames from the pipes as soon as they are sent, so a
        # worker never waits on the caller (a frame set is megabytes, far over a pipe buffer)
        self.cond = threading.Condition()
        self.closed = False
        self.pump = threading.Thread(target=self._pump, daemon=True, name="rler-prefetch")
        if self.n:
            self.pump.start()

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        if self.pump.is_alive():
            self.pump.join(5)
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
        self.mappings.close()

    def get(self, i: int, timeout: float | None = None):
        if i != self.next_get:
            raise ValueError(f"jobs must be consumed in order: expected {self.next_get}, got {i}")
        if self.jobs[i] is None or self.n == 0:
            with self.cond:
                self.next_get = i + 1
                self.cond.notify_all()
            return None if self.jobs[i] is None else self.fn(self.jobs[i])
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while i not in self.ready:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    self.next_get = i + 1
                    self._abandon(i)
                    self.cond.notify_all()
                    raise DecodeTimeout(f"decoding took longer than the sample timeout ({timeout:g} s); "
                                        f"its worker was stopped")
                self.cond.wait(remaining)
            result = self.ready.pop(i)
            self.next_get = i + 1
            self.cond.notify_all()  # the window moved: the pump hands out the next jobs
        if isinstance(result, Failure):
            raise result.exception()
        return result

    # ------------------------------------------------------------------ the pump thread

    def _pump(self) -> None:
        while True:
            with self.cond:
                if self.closed:
                    return
                self._assign()
                busy = {w.conn: w for w in self.workers if w.job is not None}
                if not busy:
                    self.cond.wait(0.5)
                    continue
            try:
                done = wait(list(busy), 0.1)
            except (OSError, ValueError):  # a connection closed under us: its worker was replaced
                continue
            for conn in done:
                self._receive(busy[conn])

    def _receive(self, w: _Worker) -> None:
        try:
            index, result = w.conn.recv()  # unpickled outside the lock
            result = self.mappings.copy_out(result)
        except (EOFError, OSError, ValueError):
            index, result = None, None
        with self.cond:
            if w not in self.workers or w.job is None:
                return  # abandoned by a timeout meanwhile
            if index is None:
                index = w.job
                result = Failure("WorkerFailed", f"the decode worker died (exit code {w.proc.exitcode})", True)
                self._replace(w)
            else:
                w.job = None
            self.ready[index] = result
            self.cond.notify_all()

    def _assign(self) -> None:
        """Hand the next jobs within the window to idle workers (the lock is held)."""
        for w in self.workers:
            if w.job is None and self.todo and self.todo[0] < self.next_get + self.ahead:
                w.job = self.todo.popleft()
                w.conn.send((w.job, self.jobs[w.job]))

    def _abandon(self, i: int) -> None:
        for w in self.workers:
            if w.job == i:
                self._replace(w)

    def _replace(self, w: _Worker) -> None:
        w.kill()
        self.workers[self.workers.index(w)] = _Worker(self.ctx, self.fn)
