"""The whole system on this machine, no AWS account and no Docker: `python -m local.run` (`make run`).

moto's server holds the template's tables, queues and the passwords, a loopback SMTP server with
STARTTLS and AUTH keeps every message as an .eml file, an HTTP server routes the template's API to the
real handlers, and a poller feeds the outbox queue to the email worker as Lambda's SQS event source
would. The demo tenant is seeded through the real handlers: its company settings, its three automated
emails switched on, and work orders around tomorrow (no email is sent until you ask for it). The
handlers' JSON logs go to the Lambda log file; the console shows one line per event.

The parts: local.stack_config (the environment), local.tls_files, local.seed (the demo tenant),
local.lambda_log and local.console (what goes where), local.stack (`start_stack()`, in-process, for
tests), local.api_pool (the API's worker processes) and local.banner. `main()` starts the stack,
prints the banner and waits for a signal.
"""

from __future__ import annotations

import signal
import sys
import time
from types import FrameType

from local.banner import banner
from local.handlers import quiet_handler_warnings
from local.seed import demo_settings
from local.stack import LocalStack, start_stack
from local.stack_config import StackConfig

__all__ = ["LocalStack", "StackConfig", "banner", "demo_settings", "main", "start_stack"]


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    quiet_handler_warnings()  # in the worker processes too (local.api_worker)
    try:
        config = StackConfig.from_env()
        stack = start_stack(config, out=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        return 0
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"The local stack could not start: {exc}", file=sys.stderr)
        return 1
    print(banner(stack), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        print("Local stack stopped.", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
