"""Where a run's wall time goes: start-up, data, compilation, steps and the loop's overheads.

A `Timings` collects seconds by phase (`with timings.phase('eval'): ...`) and, through
`jax.monitoring`, the seconds JAX spends tracing and compiling; `summary()` is the line a run
logs when it ends, e.g.

    time 20.4 s: startup 1.4 (python and imports), data 0.2, init 0.1, restore 0.0, first step
    0.1, train steps 15.6, log 0.5, eval 0.8, images 0.2, checkpoints 0.1, compile 1.2, other 0.3

Compilation happens inside the first call of each jitted function, so it is counted once, as
'compile', and taken out of the phase it happened in.
"""

import contextlib
import threading
import time
from collections import defaultdict

from jax import monitoring

# JAX's duration events of one compilation: tracing, lowering to MLIR, XLA's compile (or the
# persistent cache's read).
_COMPILE_EVENTS = ('/jax/core/compile/jaxpr_trace_duration',
                   '/jax/core/compile/jaxpr_to_mlir_module_duration',
                   '/jax/core/compile/backend_compile_duration')
_compile_seconds = [0.0]
_lock = threading.Lock()
_registered = []
_started: list = []  # a Timings was made in this process
_entry: list = []  # time.monotonic() at the entry point's first line (`mark_entry`)


def _listener(event: str, duration: float, **_) -> None:
    if event in _COMPILE_EVENTS:
        with _lock:
            _compile_seconds[0] += duration


def compile_seconds() -> float:
    """Seconds this process has spent tracing and compiling with JAX (since the first
    `Timings` was made)."""
    if not _registered:
        monitoring.register_event_duration_secs_listener(_listener)
        _registered.append(True)
    return _compile_seconds[0]


def process_age() -> float | None:
    """Seconds since this process started (Linux), or None where /proc cannot tell."""
    try:
        import os
        with open('/proc/self/stat') as f:
            start_ticks = int(f.read().rsplit(')', 1)[1].split()[19])
        with open('/proc/uptime') as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf('SC_CLK_TCK'))
    except (OSError, ValueError, IndexError):
        return None


def mark_entry(started: float) -> None:
    """Tells the timings when the program's entry point began: `started` is the
    `time.monotonic()` of launch.py's first line, before its imports. Without it a run has no
    start-up phase (a run from a notebook or a test: the process was not started for it)."""
    _entry[:] = [started]


def startup_seconds() -> float | None:
    """The entry point's start-up (the interpreter and the imports): seconds since the process
    started; or since the entry point's first line, when the process is older than that by
    over a second. A shell that runs commands and then execs Python as its last one (`bash -c
    "pip install ... && python launch.py"`, a job script's `exec python ...`) hands its own
    process, with its age, to Python. None when `mark_entry` was not called."""
    if not _entry:
        return None
    since_entry = time.monotonic() - _entry[0]
    age = process_age()
    if age is None or age > since_entry + 1.0:
        return since_entry
    return age


class Timings:
    """Seconds by phase, in the order the phases first ran; compilation counted apart."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        # The interpreter and imports, before this object: only the process's first Timings
        # has them (a sweep's later points would count the earlier points' training), and
        # only in a process an entry point started (`mark_entry`).
        self.startup = None if _started else startup_seconds()
        _started.append(True)
        self._compile0 = compile_seconds()
        self._t0 = time.perf_counter()

    @contextlib.contextmanager
    def phase(self, name: str):
        """Adds the wall time of the block to `name`, less the compilation inside it."""
        t0, c0 = time.perf_counter(), compile_seconds()
        try:
            yield
        finally:
            self.seconds[name] += (time.perf_counter() - t0) - (compile_seconds() - c0)

    @property
    def compile(self) -> float:
        return compile_seconds() - self._compile0

    def as_dict(self) -> dict[str, float]:
        """{phase: seconds}, with 'startup', 'compile', 'other' and 'total' (since the process
        started, when known)."""
        elapsed = time.perf_counter() - self._t0
        out = {'startup': self.startup or 0.0, **self.seconds, 'compile': self.compile}
        out['other'] = max(0.0, elapsed - sum(self.seconds.values()) - self.compile)
        out['total'] = elapsed + (self.startup or 0.0)
        return {k: round(v, 3) for k, v in out.items()}

    def summary(self) -> str:
        d = self.as_dict()
        total = d.pop('total')
        parts = [f'{k.replace("_", " ")} {v:.1f}' + (' (python and imports)' if k == 'startup'
                                                    else '') for k, v in d.items()]
        return f'time {total:.1f} s: ' + ', '.join(parts)
