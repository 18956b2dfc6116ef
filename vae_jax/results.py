"""Results files (`<workdir>/results/eval_<step>.json`): helpers shared by writers and readers."""


def flat_scalars(results: dict) -> dict[str, float]:
    """The numeric leaves of `results` as 'a/b' names (lists, strings, booleans left out)."""
    flat = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f'{prefix}/{k}' if prefix else k, v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[prefix] = float(value)
    walk('', {k: v for k, v in results.items() if k not in ('step', 'workdir')})
    return flat
