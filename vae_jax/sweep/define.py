"""Sweep definitions: lists of points, each a dict of dotted config overrides.

An experiment file declares its sweep next to its config:

    def get_sweep(arg=None):
        return product(sweep('objective.beta', [1, 4, 16]), sweep('seed', [0, 1, 2]))

which expands to 9 points, the last factor varying fastest (as in `itertools.product`):
{'objective.beta': 1, 'seed': 0}, {'objective.beta': 1, 'seed': 1}, ...
`expand` numbers the points (their position in the list: what `--sweep_index` selects) and
names them (`beta=1,seed=0`): the name is the point's workdir under the sweep root.
"""

import dataclasses
import importlib.util
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from vae_jax.errors import UserError

Overrides = dict[str, Any]
MAX_NAME_LENGTH = 200  # file names are limited to 255 bytes


@dataclasses.dataclass(frozen=True)
class Point:
    index: int           # position in the sweep: stable as long as the definition is
    name: str            # e.g. 'beta=4,seed=1': the point's workdir is ROOT/<name>
    overrides: Overrides  # dotted config field -> value, e.g. {'objective.beta': 4.0}


def _plain(value, key):
    """A JSON-able override value: bool, int, float, str or a tuple of them."""
    if hasattr(value, 'item') and getattr(value, 'ndim', 1) == 0:
        value = value.item()  # numpy scalars
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v, key) for v in value)
    if isinstance(value, (bool, int, float, str)):
        return value
    raise UserError(f'sweep value {value!r} of {key!r} is a {type(value).__name__}; use numbers, '
                    f'strings, booleans or tuples of them')


def _check_key(key) -> None:
    if not isinstance(key, str) or not all(p.isidentifier() for p in key.split('.')):
        raise UserError(f'sweep key {key!r} is not a dotted config field like "objective.beta"')


def sweep(key: str, values: Iterable) -> list[Overrides]:
    """One point per value of the dotted config field `key`: [{key: v} for v in values]."""
    _check_key(key)
    values = list(values)
    if not values:
        raise UserError(f'sweep({key!r}, ...) has no values')
    return [{key: _plain(v, key)} for v in values]


def _points(factor) -> list[Overrides]:
    """`factor` as a list of dicts (a sweep factor or a whole sweep)."""
    try:
        points = None if isinstance(factor, (dict, str)) else list(factor)
    except TypeError:
        points = None
    if points is None or not all(isinstance(p, dict) for p in points):
        raise UserError(f'a sweep is a list of dicts, as sweep(key, values) returns; got '
                        f'{factor!r:.80}')
    return [dict(p) for p in points]


def _keys(points: Sequence[Overrides]) -> set[str]:
    return {k for p in points for k in p}


def _disjoint(factors: Sequence[list[Overrides]], combinator: str) -> None:
    seen: set[str] = set()
    for f in factors:
        shared = seen & _keys(f)
        if shared:
            raise UserError(f'{combinator}(...) factors both set {", ".join(sorted(shared))}')
        seen |= _keys(f)


def product(*factors) -> list[Overrides]:
    """Every combination of one point from each factor; the last factor varies fastest."""
    factors = [_points(f) for f in factors]
    _disjoint(factors, 'product')
    out: list[Overrides] = [{}]
    for f in factors:
        out = [{**a, **b} for a in out for b in f]
    return out


def zip_(*factors) -> list[Overrides]:
    """Point i merges point i of every factor (e.g. a learning rate paired with each β)."""
    factors = [_points(f) for f in factors]
    if len({len(f) for f in factors}) > 1:
        raise UserError(f'zip_(...) factors have different lengths {[len(f) for f in factors]}')
    _disjoint(factors, 'zip_')
    return [{k: v for p in ps for k, v in p.items()} for ps in zip(*factors)]


def chain(*factors) -> list[Overrides]:
    """The points of every factor, one factor after the other (e.g. two separate sub-sweeps)."""
    return [p for f in factors for p in _points(f)]


def format_value(value) -> str:
    """A value as it appears in a point name: 4.0 -> '4', 1e-05 -> '1e-05', (64, 64) -> '64x64'."""
    if isinstance(value, tuple):
        return 'x'.join(format_value(v) for v in value) if value else 'empty'
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith('.0') else text
    # Anything but letters, digits and ._+- would be unsafe in a path or ambiguous in a name.
    return re.sub(r'[^A-Za-z0-9._+-]', '-', str(value))


def short_labels(keys: Sequence[str]) -> dict[str, str]:
    """Each key's last component ('objective.beta' -> 'beta'), or the whole key where two keys
    of the sweep share that component (optim.learning_rate vs discriminator.learning_rate)."""
    last = [k.rsplit('.', 1)[-1] for k in keys]
    return {k: (l if last.count(l) == 1 else k) for k, l in zip(keys, last)}


def ordered_keys(points: Sequence[Overrides]) -> list[str]:
    """Every key of the sweep, in order of first appearance."""
    return list(dict.fromkeys(k for p in points for k in p))


def expand(points: Iterable[Overrides]) -> list[Point]:
    """Numbers and names the points; UserError for an empty sweep or duplicate points/names."""
    points = [{k: _plain(v, k) for k, v in p.items()} for p in _points(points)]
    if not points:
        raise UserError('the sweep has no points')
    keys = ordered_keys(points)
    for k in keys:
        _check_key(k)
    labels = short_labels(keys)
    out, by_name = [], {}
    for i, p in enumerate(points):
        name = ','.join(f'{labels[k]}={format_value(p[k])}' for k in keys if k in p) or 'base'
        if name in by_name:
            j = by_name[name]
            same = 'the same overrides' if points[j] == p else f'the name {name!r}'
            raise UserError(f'sweep points {j} and {i} have {same}: {points[j]} and {p}')
        if len(name) > MAX_NAME_LENGTH:
            raise UserError(f'sweep point {i} has a name of {len(name)} characters (at most '
                            f'{MAX_NAME_LENGTH}): {name[:60]}...')
        by_name[name] = i
        out.append(Point(i, name, p))
    return out


def split_config_spec(spec: str) -> tuple[str, str | None]:
    """'experiments/vae.py:quick' -> ('experiments/vae.py', 'quick'), as ml_collections splits."""
    path, *arg = spec.split(':', 1)
    return path, (arg[0] if arg else None)


def load_sweep(spec: str) -> list[Point]:
    """The expanded points of `get_sweep(arg)` in the config file `spec` ('file.py[:arg]')."""
    path, arg = split_config_spec(spec)
    module_spec = importlib.util.spec_from_file_location('vae_jax_sweep_config', path)
    if not Path(path).is_file() or module_spec is None:
        raise UserError(f'cannot load the sweep: no config file {path!r}')
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, 'get_sweep'):
        raise UserError(f'{path} defines no get_sweep(); add one, e.g. returning '
                        f"product(sweep('objective.beta', [1, 4]), sweep('seed', [0, 1]))")
    return expand(module.get_sweep(arg) if arg is not None else module.get_sweep())
