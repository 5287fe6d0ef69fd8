"""``python -m bnext.deploy.build``: compile (or find cached) the packed kernels and list the CPU paths they run."""

from __future__ import annotations

import sys

from bnext.deploy.kernels import extension, supported_paths


def main() -> int:
    if extension() is None:
        print("packed kernels unavailable: the runtime will use the torch reference path", file=sys.stderr)
        return 0  # not fatal: everything still runs, only slower
    print(f"packed kernels ready; this CPU runs the {', '.join(supported_paths())} paths")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
