"""The worker of an isolated run: `ENV/bin/python -I -m compressgate.registry.run.worker`.

It reads the request (one JSON line) on stdin and answers on its stdout, one JSON line per
message (see the protocol in `compressgate.registry.run.engine`). Everything else the stages print
goes to
stderr: the real stdout is kept for the channel and fd 1 is pointed at stderr before any stage
code runs.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any


def main() -> int:
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(message: dict[str, Any]) -> None:
        channel.write(json.dumps(message) + "\n")
        channel.flush()

    def receive() -> dict[str, Any] | None:
        line = sys.stdin.readline()
        return json.loads(line) if line else None

    from compressgate.registry.kernel.errors import CompressgateError, StageError
    from compressgate.registry.run import engine as executor

    request = receive()
    if request is None:
        return 2
    try:
        executor.serve(request, send, receive)
    except CompressgateError as exc:
        send(
            {
                "op": "error",
                "type": type(exc).__name__,
                "message": str(exc),
                "hint": exc.hint,
                "stage": exc.stage if isinstance(exc, StageError) else None,
            }
        )
        return exc.exit_code
    except BaseException as exc:
        traceback.print_exc()
        send({"op": "error", "type": type(exc).__name__, "message": str(exc), "hint": None})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
