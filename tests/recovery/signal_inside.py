"""The command line, sending itself a signal as a function of onnxtrim is entered: a fault at an exact point.

    python -m tests.recovery.signal_inside SIGTERM onnxtrim.torch_bridge.finetune:write_back -- MODEL ...

The signal is sent (os.kill to itself) on entering the function, so its handler runs while the function
runs; everything else is the real CLI in a real process, so the test sees what a user's shell would.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from typing import Any


def main(argv: list[str]) -> int:
    split = argv.index("--")
    (name, target), args = argv[:split], argv[split + 1:]
    signum = int(getattr(signal, name))
    module_name, attr = target.split(":")
    module = importlib.import_module(module_name)
    real = getattr(module, attr)

    def signalled(*a: Any, **k: Any) -> Any:
        os.kill(os.getpid(), signum)
        return real(*a, **k)

    setattr(module, attr, signalled)
    from onnxtrim.cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
