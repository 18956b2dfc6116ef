"""What a compiled XLA program does, read off its text (`compiled.as_text()`): how many kernels
it runs and how many float32 elements they write. No timing, so no noise: two formulations of
the same step compare exactly.

The count covers the computations that run kernels (the entry, and the bodies and conditions of
its while loops and calls), each once: a loop body of 10 steps counts as one step. The insides
of kernels (the computations that fusions, reductions and maps call) are not counted.
"""

import math
import re

# `%name = TYPE opcode(...`: the result's type (an array, or a tuple of arrays) and the opcode.
_INSTRUCTION = re.compile(r'^\s*(?:ROOT )?%\S+ = (.+?) ([a-z][\w-]*)\(')
_F32 = re.compile(r'f32\[([\d,]*)\]')
# Operations that only name or regroup existing buffers, or control flow: not kernels.
_NOT_KERNELS = {'parameter', 'constant', 'get-tuple-element', 'tuple', 'bitcast', 'while',
                'conditional', 'call', 'after-all', 'partition-id', 'replica-id'}
# Attributes that name a kernel's inside (not counted) and control flow's bodies (counted).
_INSIDE = re.compile(r'(?:calls|to_apply|select|scatter)=(%[\w.-]+)')


def program_work(hlo_text: str) -> tuple[int, int]:
    """(kernels, f32 elements written) of one run of a compiled program's text: every
    instruction outside kernels' insides that is not a parameter, constant, tuple or control
    flow, and the f32 elements of its result (all of a tuple's f32 arrays)."""
    computations = re.split(r'\n(?=\S)', hlo_text)
    inside = set(_INSIDE.findall(hlo_text))
    kernels = elements = 0
    for computation in computations:
        name = re.match(r'(?:ENTRY )?(%[\w.-]+)', computation)
        if name is None or name.group(1) in inside:
            continue
        for line in computation.split('\n')[1:]:
            m = _INSTRUCTION.match(line)
            if m is None or m.group(2) in _NOT_KERNELS:
                continue
            kernels += 1
            elements += sum(math.prod(int(d) for d in dims.split(',') if d)
                            for dims in _F32.findall(m.group(1)))
    return kernels, elements
