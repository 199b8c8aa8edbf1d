"""Which slides the demo cohort has, known before anything is drawn (standard library only).

The Snakefile needs the demo's slide list to build its DAG, and runs where only Snakemake is
installed, so this cannot use numpy. The draws are numpy's `default_rng([seed, 1]).random()`
(SeedSequence -> PCG64 -> 53-bit float) written out in plain integers, so the cohort is the one
the package has always generated; a test checks it against numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import cycle

# slides per slide job when slides_per_job is empty: the demo's slides have ~40 patches each, so a job
# per slide would spend more on its start-up and the encoder's load than on its slide; 16 splits the
# default cohort's 30 slides into two jobs, one per core of a laptop, and the 13 it scores into one
SLIDES_PER_JOB = 16

M32, M64, M128 = (1 << 32) - 1, (1 << 64) - 1, (1 << 128) - 1
PCG_MULT = 0x2360ED051FC65DA44385DF649FCCF645


@dataclass(frozen=True)
class DemoSlide:
    slide_id: str
    case_id: str


def plan(patients: int, seed: int) -> list[DemoSlide]:
    draws = _random_floats([seed, 1])
    slides = []
    for i in range(patients):
        case = f"DEMO-{i:03d}"
        # about a third of the patients get two slides, as in TCGA
        for j in range(2 if next(draws) < 0.35 else 1):
            slides.append(DemoSlide(f"{case}-S{j + 1}", case))
    return slides


def plan_new(new_patients: int) -> list[DemoSlide]:
    """The demo's new patients, to score from their slides alone: one slide each, no outcome."""
    return [DemoSlide(f"NEW-{i:03d}-S1", f"NEW-{i:03d}") for i in range(new_patients)]


def plan_validation(validation_patients: int) -> list[DemoSlide]:
    """The demo's held-out labelled cohort (external validation): one slide each, with outcomes,
    none of them in the training cohort."""
    return [DemoSlide(f"VAL-{i:03d}-S1", f"VAL-{i:03d}") for i in range(validation_patients)]


def _seed_words(entropy: list[int]) -> list[int]:
    """numpy SeedSequence(entropy).generate_state(4, uint64), for small non-negative ints."""
    words = []
    for value in entropy:  # each int as little-endian 32-bit words (0 is one word)
        words.append(value & M32)
        value >>= 32
        while value:
            words.append(value & M32)
            value >>= 32
    hash_a = [0x43B0D7E5]

    def hashmix(value):
        value ^= hash_a[0]
        hash_a[0] = (hash_a[0] * 0x931E8875) & M32
        value = (value * hash_a[0]) & M32
        return value ^ (value >> 16)

    def mix(x, y):
        r = (0xCA01F9DD * x - 0x4973F715 * y) & M32
        return r ^ (r >> 16)

    pool = [hashmix(words[i] if i < len(words) else 0) for i in range(4)]
    for src in range(4):
        for dst in range(4):
            if src != dst:
                pool[dst] = mix(pool[dst], hashmix(pool[src]))
    for src in range(4, len(words)):
        for dst in range(4):
            pool[dst] = mix(pool[dst], hashmix(words[src]))
    hash_b, state32 = 0x8B51F9DD, []
    for value in (v for v, _ in zip(cycle(pool), range(8))):
        value ^= hash_b
        hash_b = (hash_b * 0x58F38DED) & M32
        value = (value * hash_b) & M32
        state32.append(value ^ (value >> 16))
    return [state32[2 * i] | (state32[2 * i + 1] << 32) for i in range(4)]


def _random_floats(entropy: list[int]):
    """numpy's PCG64 (XSL-RR output) seeded by SeedSequence(entropy): an endless stream of floats
    in [0, 1), equal to Generator.random()."""
    w = _seed_words(entropy)
    init_state, init_seq = (w[0] << 64) | w[1], (w[2] << 64) | w[3]
    inc = ((init_seq << 1) | 1) & M128
    state = (inc + init_state) & M128  # state 0 stepped once (= inc), plus the initial state
    state = (state * PCG_MULT + inc) & M128
    while True:
        state = (state * PCG_MULT + inc) & M128
        rot = state >> 122
        x = ((state >> 64) ^ state) & M64
        out = ((x >> rot) | (x << (64 - rot))) & M64
        yield (out >> 11) * (1.0 / 9007199254740992.0)
