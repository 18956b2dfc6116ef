"""The one exception type vae_jax raises for bad user input.

`launch.py` turns a `UserError` into a single ``error: ...`` line and a non-zero exit; anything
else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad configuration, missing data, or an unusable workdir: the message says what and how to fix it."""


def fail(message: str) -> None:
    """Ends a command with one `error: ...` line on stderr and exit status 2."""
    import sys
    print(f'error: {message}', file=sys.stderr)
    sys.exit(2)


def parse_flags(argv):
    """absl's flag parsing for a command's `app.run(main, flags_parser=parse_flags)`: a bad,
    unknown or missing flag is one `error:` line, not absl's usage dump."""
    from absl import flags
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(f'{e} (see --helpfull)')


def run_command(define_flags, body) -> None:
    """Runs a `python -m` command: defines its flags, parses them (`parse_flags`), refuses
    positional arguments, logs at INFO and runs `body()`, a `UserError` ending it with one
    `error:` line. As in launch.py, what exists before `body()` (the imports) and, at its end,
    everything is frozen out of the garbage collector's sight (`gc_freeze`)."""
    from absl import app, logging

    from vae_jax import gc_freeze

    def main(argv):
        if len(argv) > 1:
            fail(f'unexpected arguments: {" ".join(argv[1:])}')
        logging.set_verbosity(logging.INFO)
        gc_freeze.freeze()
        try:
            body()
        except UserError as e:
            fail(str(e))
        finally:
            gc_freeze.freeze()
    define_flags()
    app.run(main, flags_parser=parse_flags)
