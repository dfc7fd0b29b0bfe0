"""The template's API functions loaded into this process and invoked as Lambda would invoke them."""

from __future__ import annotations

import importlib.util
import sys
import threading
import traceback
from types import ModuleType
from typing import Any

from local.events import FakeContext
from local.template import ROOT, Template

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


class FunctionImportError(RuntimeError):
    """Lambda answers every invocation of a function whose module fails to import with that error."""


class Functions:
    """The template's functions, loaded once per process.

    Invocations run one at a time: each handler keeps per-container state (the resolver's current
    event, metrics, the batch processor's results, cached clients) that Lambda never shares between
    concurrent requests. `lock` is re-entrant, so a caller that must read that state after an
    invocation (the queue poller) holds it around both.
    """

    def __init__(self, template: Template) -> None:
        self.template = template
        self.lock = threading.RLock()
        self.api_functions = sorted({route.function for route in template.routes()})
        self.import_errors: dict[str, str] = {}

    def module(self, logical_id: str) -> ModuleType:
        if logical_id in self.import_errors:
            raise FunctionImportError(f"{logical_id} failed to import: {self.import_errors[logical_id]}")
        if logical_id not in _modules:
            path, _ = self.template.handler_path(logical_id)
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
            _modules[logical_id] = module
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
        self.clear_caches()
        return loaded

    def clear_caches(self) -> None:
        for logical in self.template.functions():
            services = getattr(_modules.get(logical), "services", None)
            if callable(getattr(services, "cache_clear", None)):
                services.cache_clear()  # type: ignore[union-attr]

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        module = self.module(logical_id)
        _, name = self.template.handler_path(logical_id)
        handler = getattr(module, name)
        context = FakeContext(
            function_name=logical_id,
            invoked_function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:{logical_id}",
        )
        with self.lock:
            return handler(event, context)
