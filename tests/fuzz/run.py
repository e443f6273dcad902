"""Coverage-guided fuzzing of one target with atheris (libFuzzer):

    python -m tests.fuzz.run TARGET [libFuzzer flags] [corpus directories]

TARGET is one of ``targets.TARGETS``.  A crash (an exception or a failed
assertion in the target) exits non-zero, so CI (``.ci/run``) fails.
"""

import sys

import atheris

with atheris.instrument_imports(include=["neochat", "tests.fuzz"]):
    from tests.fuzz.targets import TARGETS


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python -m tests.fuzz.run {{{','.join(TARGETS)}}} [libFuzzer flags]")
    atheris.Setup([sys.argv[0]] + sys.argv[2:], TARGETS[sys.argv[1]])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
