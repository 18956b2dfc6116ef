#!/usr/bin/env bash
# Prepares, on a machine that reaches PyPI, what benchmarks/accelerator_check.py needs on a GPU
# machine that reaches nothing but already has Python 3.12 with JAX (and its CUDA plugin), flax,
# optax, chex, orbax-checkpoint, absl-py, numpy, scikit-learn, matplotlib, pillow and PyTorch:
#
#   .whl/       wheels (Python 3.12, manylinux x86-64) of vae_jax's other dependencies, ~10 MB
#   runs/tfds/  the prepared TFDS binarized_mnist that the ledger row reads, 17 MB
#
# Both folders are ignored by git (add `/.whl/` to .git/info/exclude); carry both to the GPU
# machine and run there, from the repository root:
#
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
#   PYTHONPATH=/tmp/site:$PWD python3 benchmarks/accelerator_check.py --row_data_dir=runs/tfds \
#       --time_budget=430 --out=$OUT/accelerator_check.json
#
# Usage: bash benchmarks/accelerator_wheels.sh [TFDS_DATA_DIR]   (default ../shared/data/tfds)
set -euo pipefail
cd "$(dirname "$0")/.."
data_dir=${1:-../shared/data/tfds}
mkdir -p .whl runs/tfds
cp -r "$data_dir/binarized_mnist" runs/tfds/
# Versions as installed with vae_jax on Python 3.11 here (2026-12-04); TFDS's own needs included.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl \
    ml_collections==1.1.0 tensorflow-datasets==4.9.10 array_record==0.8.6 tensorboardX==2.6.5 \
    importlib_resources==7.1.0 dm-tree==0.1.10 immutabledict==4.3.1 simple-parsing==0.1.9 \
    tensorflow-metadata==1.21.0 termcolor==3.3.0 toml==0.10.2 docstring-parser==0.18.0 \
    googleapis-common-protos==1.76.0
python3 -m pip wheel -q --no-deps -w .whl promise==2.3  # published as source only
du -sh .whl runs/tfds
