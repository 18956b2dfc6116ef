"""The one exception type vae_jax raises for bad user input.

`launch.py` turns a `UserError` into a single ``error: ...`` line and a non-zero exit; anything
else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad configuration, missing data, or an unusable workdir: the message says what and how to fix it."""
