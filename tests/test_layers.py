"""The package's import graph: no cycles, and no import that points up a layer.

Every import is counted, including those inside functions (a lazy import is still a
dependency). Layers, lowest first: shared plumbing and data; distributions' users (likelihoods,
priors, posterior flows, optimizers); networks and hierarchies; the model bundle; objectives; config and steps; what uses a
trained model (points, pictures, run); the loop; evaluation; training; sweeps; the public API.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / 'vae_jax'

LAYERS = [
    ('errors', 'registry', 'distributions', 'keys', 'distributed', 'workdir', 'results', 'images',
     'preemption', 'metric_writer', 'checkpoints', 'data', 'latent_sample', 'cache',
     'xla_setup', 'allocator', 'gc_freeze', 'timings', 'native'),
    ('inits', 'likelihoods', 'priors', 'flows', 'optim', 'weight_gradient', 'convolution',
     'upsample', 'activations'),
    ('models', 'hierarchies', 'gated_hierarchy', 'vdvae'),
    ('model_fns',),
    ('objectives',),
    ('configs', 'steps'),
    ('points', 'pictures', 'run'),
    ('loop',),
    ('evaluate',),
    ('train',),
    ('sweep',),
    ('ledger',),
    ('__init__', '__main__'),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' and len(parts) > 1 else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob('*.py')}


def _imports(path: Path, modules: dict) -> set[str]:
    """The vae_jax modules `path` imports, anywhere in it; `from pkg import name` counts as
    the submodule pkg.name when there is one."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith('vae_jax'):
                for alias in node.names:
                    sub = f'{node.module}.{alias.name}'
                    found.add(sub if sub in modules else node.module)
    return found


def _layer(module: str) -> int:
    top = 'vae_jax' if module == 'vae_jax' else module.split('.')[1]
    top = '__init__' if top == 'vae_jax' else top
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f'{module} is in no layer: add it to LAYERS')


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(p, modules) - {m} for m, p in modules.items()}


def test_no_module_imports_a_higher_layer():
    upward = [f'{m} (layer {_layer(m)}) imports {d} (layer {_layer(d)})'
              for m, deps in sorted(_graph().items()) for d in sorted(deps)
              if _layer(d) > _layer(m)]
    assert not upward, '\n'.join(upward)


def test_no_import_cycles():
    graph = _graph()
    # A package's __init__ re-exporting its submodules is not a cycle: drop the edges from
    # a submodule to its own package.
    graph = {m: {d for d in deps if not m.startswith(d + '.')} for m, deps in graph.items()}
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = 'open'
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 'open':
                cycles.append(' -> '.join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 'done'

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, '\n'.join(cycles)


def test_the_walk_sees_lazy_imports():
    """The checks above are only as good as the walk: it must see a function-level import."""
    modules = _modules()
    assert 'vae_jax.evaluate.factor_report' in _imports(PACKAGE / 'train.py', modules)


def test_registered_objectives_are_modules_of_the_objectives_layer():
    """The objective registry imports its modules by name (importlib), which the walk above
    cannot see: each must be a module of vae_jax.objectives, and so of that layer."""
    from vae_jax import objectives
    modules = _modules()
    for module in objectives.REGISTRY.values():
        assert f'vae_jax.objectives.{module}' in modules, module
