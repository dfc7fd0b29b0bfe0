"""The template's functions, invoked as Lambda would invoke them: the API's in worker processes
(local.api_pool) once a pool is attached, the others in this process."""

from __future__ import annotations

import importlib.util
import sys
import threading
import traceback
import warnings
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from local.events import FakeContext
from local.template import ROOT, Template

if TYPE_CHECKING:
    from local.api_pool import ApiProcessPool

_modules: dict[str, ModuleType] = {}


def add_layers_to_path(template: Template) -> None:
    """Lambda puts each layer on the import path; here that is the layer's ContentUri."""
    for spec in template.of_type("AWS::Serverless::LayerVersion").values():
        path = str((ROOT / spec["Properties"]["ContentUri"]).resolve())
        if path not in sys.path:
            sys.path.insert(0, path)


def shared_environment(template: Template) -> dict[str, str]:
    """Every function runs in this one process, so their variables must agree (the service name aside)."""
    merged: dict[str, str] = {}
    for logical in template.functions():
        for key, value in template.function_environment(logical).items():
            if key == "POWERTOOLS_SERVICE_NAME":
                continue
            if merged.setdefault(key, value) != value:
                raise ValueError(
                    f"{key} is {merged[key]!r} for one function and {value!r} for {logical}; "
                    "the local stack runs every function in one process and cannot give both."
                )
    return merged | {"POWERTOOLS_SERVICE_NAME": "local"}


def reset_shared_clients() -> None:
    """Forget boto3 clients and TLS contexts cached by the layer: they point at an old endpoint or CA."""
    from mailer.dal import clients as aws_clients
    from mailer.delivery.tls import client_context

    aws_clients.reset()
    client_context.cache_clear()


def import_handler(logical_id: str, path: Path) -> ModuleType:
    """A function's handler module, imported from its file under a name of its own."""
    name = f"local_fn_{logical_id}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the handler of {logical_id} from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def clear_services(module: ModuleType | None) -> None:
    """Forget a handler module's cached services: its next invocation is a cold container's."""
    services = getattr(module, "services", None)
    if callable(getattr(services, "cache_clear", None)):
        services.cache_clear()  # type: ignore[union-attr]


def quiet_handler_warnings() -> None:
    """Powertools warns when a handler adds no metric (every GET): noise on a developer's console."""
    warnings.filterwarnings("ignore", message="No application metrics to publish")


class FunctionImportError(RuntimeError):
    """Lambda answers every invocation of a function whose module fails to import with that error."""


class Functions:
    """The template's functions, loaded once per process, and the pool of the API's processes.

    In this process invocations run one at a time: each handler keeps per-container state (the
    resolver's current event, metrics, the batch processor's results, cached clients) that Lambda
    never shares between concurrent requests. `lock` is re-entrant, so a caller that must read that
    state after an invocation (the queue poller) holds it around both. The API's functions are
    imported here too (the OpenAPI document is built from them, the demo tenant is seeded through
    them), but once `pool` is set their invocations run there, concurrently, one per process.
    """

    def __init__(self, template: Template) -> None:
        self.template = template
        self.lock = threading.RLock()
        self.api_functions = sorted({route.function for route in template.routes()})
        self.import_errors: dict[str, str] = {}
        self.pool: ApiProcessPool | None = None

    def api_handlers(self) -> dict[str, tuple[Path, str]]:
        """Where each API function's handler is: what a worker process imports."""
        return {logical: self.template.handler_path(logical) for logical in self.api_functions}

    def record_import_error(self, logical_id: str, error: str, trace: str) -> None:
        """A function failed to import in a worker process: reported once, with its traceback, and
        every invocation fails with it from then on, as here."""
        if logical_id not in self.import_errors:
            print(trace, file=sys.stderr, end="")
            self.import_errors[logical_id] = error

    def _check_imported(self, logical_id: str) -> None:
        if logical_id in self.import_errors:
            raise FunctionImportError(f"{logical_id} failed to import: {self.import_errors[logical_id]}")

    def module(self, logical_id: str) -> ModuleType:
        self._check_imported(logical_id)
        if logical_id not in _modules:
            path, _ = self.template.handler_path(logical_id)
            _modules[logical_id] = import_handler(logical_id, path)
        return _modules[logical_id]

    def load(self, logical_id: str) -> ModuleType | None:
        """Import one function; None when it fails, reported as Lambda reports Runtime.ImportModuleError:
        its traceback on stderr, the error in `import_errors`, and every invocation failing with it."""
        try:
            return self.module(logical_id)
        except FunctionImportError:
            return None
        except Exception as exc:  # noqa: BLE001 - reported, the other functions keep working
            traceback.print_exc(file=sys.stderr)
            self.import_errors[logical_id] = "".join(traceback.format_exception_only(exc)).strip()
            return None

    def load_all(self) -> dict[str, ModuleType]:
        """Import every API function (after the environment is set) and drop what they cached before.

        A function that fails to import is reported here, with its traceback on stderr, and its routes
        answer an error, as in Lambda; the other functions keep working.
        """
        loaded: dict[str, ModuleType] = {}
        for logical in self.api_functions:
            module = self.load(logical)
            if module is not None:
                loaded[logical] = module
        self._clear_here()
        return loaded

    def _clear_here(self) -> None:
        for logical in self.template.functions():
            clear_services(_modules.get(logical))

    def clear_caches(self) -> None:
        """Cold containers for every function: here, and in each process of the pool."""
        self._clear_here()
        if self.pool is not None:
            self.pool.clear_caches()

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        """As Lambda would: an API function in a process of `pool` when one is set, else here."""
        self._check_imported(logical_id)
        pool = self.pool
        if pool is not None and logical_id in pool.functions:
            return pool.invoke(logical_id, event)
        return self.invoke_here(logical_id, event)

    def invoke_here(self, logical_id: str, event: dict[str, Any]) -> Any:
        """In this process, under `lock`, whatever the function."""
        module = self.module(logical_id)
        _, name = self.template.handler_path(logical_id)
        handler = getattr(module, name)
        context = FakeContext(
            function_name=logical_id,
            invoked_function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:{logical_id}",
        )
        with self.lock:
            return handler(event, context)
