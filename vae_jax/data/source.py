"""The one interface every dataset implements, so the train loop never special-cases a dataset."""

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Source(Protocol):
    """A random-access dataset of fixed-shape examples.

    Attributes:
        num_examples: number of examples; valid indices are ``0 .. num_examples - 1``.
        example_shape: shape of one example, e.g. ``(28, 28, 1)``, ``(64, 64, 1)`` or ``(2,)``.
        num_classes: number of label values (0 when the dataset has no labels).
    """

    num_examples: int
    example_shape: tuple
    num_classes: int

    def get_batch(self, indices: np.ndarray) -> dict:
        """Reads examples by index.

        Args:
            indices: int ``[n]``, each in ``[0, num_examples)``; repeats allowed.

        Returns:
            ``{'image': float32 [n, *example_shape], 'label': int32 [n]}``. Images lie in
            ``[0, 1]``; for 2-D toy data ``'image'`` holds the points (any real values).
        """
        ...
