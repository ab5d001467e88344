"""Helpers shared by the benchmark scripts (run them as ``python benchmarks/NAME.py``)."""


def threads_from_argv(argv) -> str:
    """The value of ``--threads`` in ``argv`` (default "1"), read before numpy is imported
    so that the BLAS thread count can still be set through the environment."""
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return "1"
