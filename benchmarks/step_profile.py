"""Where a model's train step spends XLA:CPU's time, by kind of fused operation.

    python benchmarks/step_profile.py                        # the conv β-VAE, its config's flags
    python benchmarks/step_profile.py --models conv --no_config_flags
    python benchmarks/step_profile.py --models mlp,vdvae --steps 5
    taskset -c 0 python benchmarks/step_profile.py --ops --one_thread --torch --top 60
                                                  # op by op on one core, against PyTorch

Traces `--steps` steps of the experiment's pmapped train step (`train_speed.JaxRunner`, after
warm-up) with `jax.profiler`, reads the trace back (`jax.profiler.ProfileData`) and sums the
time of each executed XLA operation over XLA:CPU's worker threads, grouped by its name less the
numeric suffix (`transpose_copy_fusion.5` -> `transpose_copy_fusion`). The total is CPU time
(both threads), not wall time. The process runs with the model's `config.xla_cpu_flags`, as
launch.py would, unless `--no_config_flags`; every model must then share those flags.

Then, with `--transposes`, the kind of copy that dominated the conv step without its flags: an
activation [64, 32, 32, 32] transposed to [32, 32, 32, 64] alone, and with the bias and ReLU
fused into the copy, each jitted and timed on its own.

With `--ops`, each executed operation is listed on its own (`ynn_fusion.71`), with its output
shape, the model code it came from (the `op_name` XLA keeps in the compiled program, `bwd` for
the backward pass; the weight-gradient convolutions and the copies XLA adds have none), and the
window and dimension labels of the convolutions it runs. `--one_thread` (under `taskset -c 0`,
one core) runs XLA:CPU's Eigen kernels (`--xla_cpu_multi_thread_eigen=false`) and PyTorch on
one thread: operations then run one after another, so their times add up to the step's and
compare op by op; on two threads operations overlap, and a time can include waiting for the
other thread. `--torch` lists PyTorch's operators for the same model's step
(`train_speed.TorchRunner`: self CPU time per step by operator and input shapes, from
`torch.profiler`, in a child process), if PyTorch is installed.

Each table's total is the mean over the profiled steps (a first 10 are profiled and dropped:
the first steps under a profiler ran up to 2.4× slower), printed beside the best of 3 blocks of
unprofiled steps. On one core they agreed within 5% for vae_jax. PyTorch's profiled steps took
0-30% longer for the conv net, more in some runs (its operators that write 8 MB outputs, the
last layer's backward pass and a copy, varied most), and 3.7× longer for the MLP on one core
(its Adam's `sqrt` and `div` at 4 ms each; without the profiler its steps do not slow down
over 300 steps): read PyTorch's op times as shares, against its unprofiled step.
"""

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import train_speed as T  # noqa: E402
from vae_jax import xla_setup  # noqa: E402


def _model(name: str):
    """(config, input shape, host batches) of `train_speed`'s model `name`."""
    filename, shape, _ = T.MODELS[name]
    config = T.load_config(filename)
    return config, shape, T.host_batches(config.batch_size, shape)


def step_ms(run, steps: int) -> float:
    """Wall ms per step of `run(steps)`, the best of 3."""
    best = float('inf')
    for _ in range(3):
        t0 = time.perf_counter()
        run(steps)
        best = min(best, (time.perf_counter() - t0) / steps * 1e3)
    return best


def profile(name: str, steps: int, by_op: bool = False) -> tuple[dict[str, float], object]:
    """({operation kind, or each operation with `by_op`: CPU ms per step}, the runner) of
    `name`'s train step."""
    import jax
    config, shape, batches = _model(name)
    runner = T.JaxRunner(config, shape, batches)
    runner.run(5)
    # As PyTorch's (`torch_ops`), the first steps under a profiler ran up to 2.4× slower than
    # the rest: a first trace of 10 steps is discarded.
    for n in (10, steps):
        with tempfile.TemporaryDirectory() as tmp:
            jax.profiler.start_trace(tmp)
            runner.run(n)
            jax.profiler.stop_trace()
            if n == steps:
                (trace,) = Path(tmp).rglob('*.xplane.pb')
                data = jax.profiler.ProfileData.from_file(str(trace))
    ns = collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            if 'Eigen' not in line.name:  # XLA:CPU's worker threads run the operations
                continue
            for event in line.events:
                if not event.name.startswith('ThunkExecutor'):
                    ns[event.name if by_op else re.sub(r'\.\d+$', '', event.name)] += (
                        event.duration_ns)
    return {kind: t / 1e6 / steps for kind, t in ns.most_common()}, runner


def compiled_text(runner) -> str:
    """The compiled program of the runner's step (the one its calls run)."""
    if runner.k > 1:
        lowered = runner.multi_step.lower(runner.state, runner.stacked, runner.key,
                                          runner.hparams)
    else:
        lowered = runner.step.lower(runner.state, runner.batches[0], runner.key, runner.hparams)
    return lowered.compile().as_text()


_INSTRUCTION = re.compile(r'^\s*(?:ROOT )?%(\S+) = (\S+?)(?:\{[^}]*\})? (\w[\w-]*)\((.*)$',
                          re.M)
_CONV = re.compile(r'window=\{([^}]*)\}, dim_labels=([^,\s]+)')


def _where(op_name: str) -> str:
    """The model code of an XLA op_name, its last three scopes with the transformations'
    wrappers taken off: 'jit(_fun)/transpose(jvp(VAE.decode))/decoder/TransposedConvUpsample_2/
    unstack' -> 'bwd decoder/TransposedConvUpsample_2/unstack'."""
    if not op_name:
        return ''
    parts = []
    for part in op_name.split('/')[1:]:  # the first is the jitted function
        while (m := re.fullmatch(r'\w+\((.*)\)', part)):
            part = m.group(1)
        parts.append(part)
    return ('bwd ' if 'transpose(' in op_name else '') + '/'.join(parts[-3:])


def describe_ops(text: str) -> dict[str, tuple[str, str, str]]:
    """{instruction name: (output shape, where in the model, convolutions' window and
    dimension labels)} of a compiled module's text (`compiled_text`)."""
    bodies = {m.group(1): m.group(2) for m in
              re.finditer(r'^%(\S+) \(.*?\{\n(.*?)^\}', text, re.M | re.S)}
    ops = {}
    for m in _INSTRUCTION.finditer(text):
        name, shape, _, rest = m.groups()
        if name in ops:
            continue
        op_name = re.search(r'op_name="([^"]*)"', rest)
        called = re.search(r'calls=%([^,\s]+)', rest)
        convs = _CONV.findall(bodies.get(called.group(1), '') if called else rest)
        ops[name] = (shape, _where(op_name.group(1) if op_name else ''),
                     '; '.join(f'{w} {d}' for w, d in convs))
    return ops


def torch_ops_child(name: str, steps: int, threads: int):
    """`torch_ops` in a fresh process on `threads` threads."""
    code = (f'import json, sys; sys.path.insert(0, {str(HERE)!r}); import step_profile as S; '
            f'S.T.torch.set_num_threads({threads}); '
            f'print(json.dumps(S.torch_ops({name!r}, {steps})))')
    out = subprocess.run([sys.executable, '-c', code], check=True, capture_output=True,
                         text=True).stdout
    rows, wall = json.loads(out.splitlines()[-1])
    return [tuple(r) for r in rows], wall


def torch_ops(name: str, steps: int) -> tuple[list[tuple[float, int, str, str]], float]:
    """([(self CPU ms per step, calls per step, operator, input shapes)], wall ms per step) of
    PyTorch's step for model `name` (`train_speed.TorchRunner`), most expensive first."""
    import torch
    from torch.profiler import ProfilerActivity
    config, _, batches = _model(name)
    runner = T.TorchRunner(config, name, batches)
    runner.run(5)
    wall = step_ms(runner.run, steps)
    # The first steps under a profiler ran up to 2.6× slower than the rest, and 10 profiled
    # steps varied by 25%: a first profile of 10 steps is discarded, and at least 30 are kept.
    steps = max(steps, 30)
    for n in (10, steps):
        with torch.profiler.profile(activities=[ProfilerActivity.CPU],
                                    record_shapes=True) as prof:
            runner.run(n)
    rows = [(e.self_cpu_time_total / 1e3 / steps, e.count // steps, e.key,
             str(e.input_shapes).replace(' ', ''))
            for e in prof.key_averages(group_by_input_shape=True)]
    return sorted(rows, reverse=True), wall


def time_ms(f, x, n=50) -> float:
    """ms per call of jitted `f(x)`, the best of 3 blocks of n."""
    import jax
    f = jax.jit(f)
    jax.block_until_ready(f(x))

    def run(calls):
        for _ in range(calls):
            out = f(x)
        jax.block_until_ready(out)
    return step_ms(run, n)


def transposes() -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np
    x = jnp.asarray(np.random.default_rng(0).normal(size=(64, 32, 32, 32)), jnp.float32)
    b = jnp.ones((32,))
    swap = lambda v: jnp.transpose(v, (3, 1, 2, 0))  # noqa: E731
    rows = [('transpose alone', lambda v: swap(v)),
            ('transpose of x * x (no broadcast)', lambda v: swap(v * v)),
            ('transpose of x * 2 (a broadcast scalar)', lambda v: swap(v * 2)),
            ('transpose of relu(x + bias)', lambda v: swap(jax.nn.relu(v + b)))]
    print('\n| [64, 32, 32, 32] -> [32, 32, 32, 64] | ms (best of 3 × 50) |\n|---|---|')
    for label, f in rows:
        print(f'| {label} | {time_ms(f, x):.2f} |')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', default='conv')
    parser.add_argument('--steps', type=int, default=10)
    parser.add_argument('--top', type=int, default=12)
    parser.add_argument('--no_config_flags', action='store_true')
    parser.add_argument('--transposes', action='store_true')
    parser.add_argument('--ops', action='store_true',
                        help='each operation on its own, with its shape and model code')
    parser.add_argument('--one_thread', action='store_true',
                        help='XLA:CPU (and PyTorch) on one thread: op times add up to the step')
    parser.add_argument('--torch', action='store_true',
                        help="PyTorch's operations for the same models' steps")
    args = parser.parse_args()
    names = args.models.split(',')
    if args.one_thread:  # before JAX's backends start, as the config's flags below
        # On one core XLA:CPU's thunks and YNNPACK's fusions run one at a time too, which the
        # Eigen flag alone does not make them. Pinned from outside, every thread is.
        if len(os.sched_getaffinity(0)) != 1:
            parser.error('--one_thread runs on one core: start it as `taskset -c 0 python '
                         'benchmarks/step_profile.py --one_thread ...`')
        os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '')
                                   + ' --xla_cpu_multi_thread_eigen=false').strip()
    flags = {T.config_flags(n) for n in names}
    if not args.no_config_flags:
        if len(flags) > 1:
            parser.error(f'--models {args.models} have different config flags {sorted(flags)}: '
                         f'profile them one by one, or pass --no_config_flags')
        xla_setup.apply_config_flags(flags.pop())
    print(f'XLA_FLAGS: {os.environ.get("XLA_FLAGS", "")}')
    threads = 'one thread' if args.one_thread else 'both threads'
    torch_rows = {}
    if args.torch and T.torch is not None:
        # Each in a child process: in this one, PyTorch's and XLA:CPU's idle worker threads
        # slowed the other's profiled steps up to 2× on one core.
        torch_rows = {name: torch_ops_child(name, args.steps, 1 if args.one_thread else 2)
                      for name in names}
    for name in names:
        ms, runner = profile(name, args.steps, by_op=args.ops)
        total = sum(ms.values())
        print(f'\n{name}: {total:.1f} ms of XLA:CPU time per step ({threads}), {args.steps} '
              f'steps, profiled; the step took {step_ms(runner.run, args.steps):.1f} ms (wall, '
              f'best of 3, not profiled)')
        if args.ops:
            ops = describe_ops(compiled_text(runner))
            print('\n| operation | ms per step | share | output | model code | convolutions |'
                  '\n|---|---|---|---|---|---|')
            for op, t in list(ms.items())[:args.top]:
                shape, where, convs = ops.get(op, ('', '', ''))
                print(f'| {op} | {t:.2f} | {t / total:.0%} | {shape} | {where} | {convs} |')
        else:
            print('\n| operation kind | ms per step | share |\n|---|---|---|')
            for kind, t in list(ms.items())[:args.top]:
                print(f'| {kind} | {t:.2f} | {t / total:.0%} |')
        if args.torch and T.torch is None:
            print('\n(PyTorch is not installed: no PyTorch column)')
        elif args.torch:
            rows, wall = torch_rows[name]
            total = sum(r[0] for r in rows)
            print(f'\n{name}, PyTorch {T.torch.__version__}: {total:.1f} ms of self CPU time per '
                  f'step ({threads}), profiled; the step took {wall:.1f} ms (wall, best of 3, not '
                  f'profiled)\n\n| operator | ms per step | share | calls per step | input '
                  f'shapes |\n|---|---|---|---|---|')
            for t, calls, op, shapes in rows[:args.top]:
                print(f'| {op} | {t:.2f} | {t / total:.0%} | {calls} | {shapes} |')
    if args.transposes:
        transposes()


if __name__ == '__main__':
    main()
