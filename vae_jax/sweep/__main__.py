"""The sweep command line.

    python -m vae_jax.sweep list experiments/vae.py[:arg]   # index and name of every point
    python -m vae_jax.sweep summarize ROOT                  # summary.csv, summary.md, plots/
"""

import argparse
import sys

from vae_jax.errors import UserError
from vae_jax.sweep.define import load_sweep
from vae_jax.sweep.summary import seed_table, summarize


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='python -m vae_jax.sweep')
    commands = parser.add_subparsers(dest='command', required=True)
    ls = commands.add_parser('list', help="print the index and name of every point (e.g. to "
                             "size a job array)")
    ls.add_argument('config', help='experiment file and argument, as in --config')
    s = commands.add_parser('summarize', help='gather the results of every point of a sweep')
    s.add_argument('root', help='the --workdir of `launch.py --sweep`')
    args = parser.parse_args(argv)
    try:
        if args.command == 'list':
            for p in load_sweep(args.config):
                print(f'{p.index}\t{p.name}')
            return 0
        out = summarize(args.root)
    except UserError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print('\n'.join(seed_table(out['rows'])))
    print(f'wrote {out["csv"]}, {out["markdown"]} and {len(out["plots"])} plots in '
          f'{out["markdown"].parent / "plots"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
