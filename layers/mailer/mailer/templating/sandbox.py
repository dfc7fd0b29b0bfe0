"""The sandbox wording is filled in with: Jinja's immutable sandbox, with bounds on what a render costs.

The companies' users write the wording, so filling it in must not be able to take a function down.
ImmutableSandboxedEnvironment keeps templates away from Python's internals; BoundedSandbox also
bounds what one render may cost:

- range() gives at most MAX_RANGE items;
- the loops of one render run at most MAX_ITERATIONS times in all: every `for` is compiled to
  iterate through a counter;
- no operator, filter, method call or `~` builds a value larger than MAX_VALUE characters (text,
  or what a list prints) or holding more than MAX_ITEMS items (lists in lists counted). Wherever
  the size is known before the work is done (`*`, `+`, `**`, `%`, `~`, padding widths, replace,
  join, format) it is checked first; otherwise the result is checked, and what a filter or method
  hands out lazily is counted as it is consumed;
- the output, and what a macro, a `{% set %}` block or a `{% filter %}` block collects, is at most
  MAX_OUTPUT characters: the render streams (Template.generate) and stops once past it;
- a render takes at most MAX_SECONDS of wall time, checked at every loop step, output piece,
  operator, call, filter and `~`, so a loop that prints nothing stops too;
- lipsum() (placeholder text, which has no place in a customer's email) is not offered.

Going over a bound raises TemplateLimitExceeded.
"""

from __future__ import annotations

import math
import re
import string
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from contextvars import ContextVar
from copy import copy
from functools import wraps
from itertools import chain
from typing import Any, cast

from jinja2 import Template, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import Context, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, pass_eval_context

from mailer.templating.bounds import TemplateLimitExceeded as TemplateLimitExceeded  # re-exported

MAX_RANGE = 1_000  # items one range() may give
MAX_ITERATIONS = 10_000  # loop steps of one render, all loops together
MAX_VALUE = 1_000_000  # characters of any value a render builds (as it would print)
MAX_ITEMS = 10_000  # items of any list, tuple or mapping a render builds, nested ones included
MAX_OUTPUT = 1_000_000  # characters of output, about 1 MB
MAX_SECONDS = 2.0  # wall time of one render
MAX_DIGITS = 3_000  # digits of a number a render builds
MAX_WORK = 10 * MAX_VALUE  # items copied while adding lists up (`sum` with a list to start from)

_TEXT = (str, bytes, bytearray)
_SCALARS = (int, float, complex, type(None))


def _mb(limit: int) -> str:
    return f"{limit / 1_000_000:g} MB"


def _too_big(what: str) -> TemplateLimitExceeded:
    return TemplateLimitExceeded(
        f"{what} would build a value larger than {_mb(MAX_VALUE)} ({MAX_VALUE:,} characters)"
        f" or holding more than {MAX_ITEMS:,} items"
    )


def _output_too_big() -> TemplateLimitExceeded:
    return TemplateLimitExceeded(
        f"the template's output would exceed {_mb(MAX_OUTPUT)} ({MAX_OUTPUT:,} characters)"
    )


# --- the budget of the render under way ---------------------------------------------------------


class _Budget:
    """Time and loop steps left to one render."""

    __slots__ = ("deadline", "iterations")

    def __init__(self) -> None:
        self.deadline = time.monotonic() + MAX_SECONDS
        self.iterations = 0

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateLimitExceeded(f"the template took more than {MAX_SECONDS:g} seconds to fill in")

    def step(self) -> None:
        self.iterations += 1
        if self.iterations > MAX_ITERATIONS:
            raise TemplateLimitExceeded(
                f"the template's loops may run at most {MAX_ITERATIONS:,} times in all"
            )
        self.tick()


_BUDGET: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


def _budget() -> _Budget:
    """The budget of the render under way; outside a render (a filter folded while compiling) a
    fresh one."""
    return _BUDGET.get() or _Budget()


def render_bounded(template: Template, context: Mapping[str, Any]) -> str:
    """The template filled in, streamed and stopped at the first bound it goes over."""
    budget = _Budget()
    token = _BUDGET.set(budget)
    stream = cast(Generator[str, None, None], template.generate(context))
    parts: list[str] = []
    size = 0
    try:
        for part in stream:
            size += len(part)
            if size > MAX_OUTPUT:
                raise _output_too_big()
            budget.tick()
            parts.append(part)
    except RecursionError:
        raise TemplateLimitExceeded("the template calls itself too deeply") from None
    finally:
        stream.close()
        _BUDGET.reset(token)
    return "".join(parts)


# --- sizes --------------------------------------------------------------------------------------


def _size(value: Any) -> int:
    """About how long a value prints: characters of text; items of a list, tuple, set, mapping or
    namespace plus the sizes of what they hold, each time it is held (a list holding the same list
    twice prints it twice). More than MAX_VALUE once past it, or once the items counted (nested
    ones included) are more than MAX_ITEMS: a list that holds itself is too big. At most about
    MAX_ITEMS steps."""
    total = 0
    items = 0
    pending = [value]
    while pending and total <= MAX_VALUE:
        item = pending.pop()
        if isinstance(item, _TEXT):
            total += len(item)
        elif isinstance(item, (list, tuple, set, frozenset, range, Mapping, Namespace)):
            if isinstance(item, Namespace):
                item = getattr(item, "_Namespace__attrs", {})  # {% set ns.x = ... %} values
            items += len(item)
            if items > MAX_ITEMS:
                return MAX_VALUE + 1
            total += len(item)
            if isinstance(item, range):
                continue
            if isinstance(item, Mapping):
                pending.extend(chain(item.keys(), item.values()))
            else:
                pending.extend(item)
        else:
            total += 1
    return total


def _checked(value: Any, what: str) -> Any:
    """The value, once it is known not to be over MAX_VALUE; an iterator is counted as consumed."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, _TEXT):
        if len(value) > MAX_VALUE:
            raise _too_big(what)
        return value
    if isinstance(value, _Counted):
        return value
    if isinstance(value, Iterator):
        return _Counted(value, what)
    if _size(value) > MAX_VALUE:
        raise _too_big(what)
    return value


def _collect(items: Iterable[Any], what: str) -> list[Any]:
    """A list of the items, refused as soon as they add up to more than MAX_VALUE (or MAX_ITEMS)."""
    budget = _budget()
    collected: list[Any] = []
    total = 0
    for item in items:
        total += _size(item) + 1
        if total > MAX_VALUE or len(collected) >= MAX_ITEMS:
            raise _too_big(what)
        budget.tick()
        collected.append(item)
    return collected


class _Counted(Iterator[Any]):
    """An iterator a render consumes: a `for` loop (what=None: each step counts against
    MAX_ITERATIONS), or what a filter or method handed out lazily (what it yields in all stays
    within MAX_VALUE and MAX_ITEMS)."""

    def __init__(self, iterable: Iterable[Any], what: str | None) -> None:
        self._items = iter(iterable)
        self._what = what
        self._budget = _budget()
        self._size = 0
        self._count = 0

    def __next__(self) -> Any:
        item = next(self._items)
        if self._what is None:
            self._budget.step()
            return item
        self._size += _size(item) + 1
        self._count += 1
        if self._size > MAX_VALUE or self._count > MAX_ITEMS:
            raise _too_big(self._what)
        self._budget.tick()
        return item


def _number(digits: str | None) -> int:
    if not digits:
        return 0
    return int(digits) if len(digits) <= 9 else MAX_VALUE + 1


_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")
_DIGITS = re.compile(r"\d+")


def _widest(values: Iterable[Any]) -> tuple[int, int]:
    """The size of the biggest value, and the biggest number (a width taken from the values)."""
    values = list(values)
    sizes = max((_size(v) for v in values), default=0)
    numbers = max((abs(v) for v in values if isinstance(v, int)), default=0)
    return sizes, numbers


def _printf_size(template: str | bytes | bytearray, values: Any) -> int:
    """At most how long `template % values` is: each conversion as wide as its width and precision,
    plus the biggest value."""
    if isinstance(values, Mapping):
        given = list(values.values())
    else:
        given = list(values) if isinstance(values, tuple) else [values]
    biggest, star = _widest(given)
    text = template if isinstance(template, str) else template.decode("latin-1")
    total = len(text)
    for match in _PRINTF.finditer(text):
        for part in match.group(1, 2):
            total += star if part == "*" else _number(part)
        total += biggest
        if total > MAX_VALUE:
            break
    return total


def _format_size(template: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    """At most how long `template.format(...)` is: each field as wide as the digits of its spec,
    plus the biggest value (and the biggest number when the spec takes its width from a value)."""
    biggest, widest_number = _widest(chain(args, kwargs.values()))
    total = 0
    for literal, field, spec, _conversion in string.Formatter().parse(template):
        total += len(literal)
        if field is None:
            continue
        total += biggest + sum(_number(d) for d in _DIGITS.findall(spec or ""))
        if spec and "{" in spec:
            total += widest_number
        if total > MAX_VALUE:
            break
    return total


def _replace_size(text: Any, old: Any, new: Any, count: Any) -> int:
    if not (isinstance(text, _TEXT) and isinstance(old, _TEXT) and isinstance(new, _TEXT)):
        return 0
    try:
        hits = text.count(old) if old else len(text) + 1  # type: ignore[arg-type]
    except TypeError:
        return 0  # str and bytes mixed: the call itself will refuse it
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * max(len(new) - len(old), 0)


def _arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str, default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _width(value: Any) -> int:
    return value if isinstance(value, int) else 0


# --- methods called from templates ('...'.center(n), sep.join(items), ...) ------------------------


def _describe(obj: Any) -> str:
    target = getattr(obj, "__wrapped__", obj)  # the sandbox hands str.format out wrapped
    name = getattr(target, "__name__", None) or getattr(target, "name", None) or type(target).__name__
    if isinstance(getattr(target, "__self__", None), (*_TEXT, int)):
        return f"the method `{name}`"
    return f"`{name}()`"


def _checked_call_args(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any], what: str) -> tuple[Any, ...]:
    """Refuse a method call on text or a number whose result would be over MAX_VALUE, before it is
    made; the arguments to call it with (join's items collected)."""
    target = getattr(obj, "__wrapped__", obj)
    owner = getattr(target, "__self__", None)
    name = getattr(target, "__name__", "")
    size = 0
    if isinstance(owner, _TEXT):
        if name in ("center", "ljust", "rjust", "zfill"):
            size = max(len(owner), _width(_arg(args, kwargs, 0, "width", 0)))
        elif name == "expandtabs":
            tab = "\t" if isinstance(owner, str) else b"\t"
            size = len(owner) + owner.count(tab) * _width(_arg(args, kwargs, 0, "tabsize", 8))  # type: ignore[arg-type]
        elif name == "replace":
            old, new = _arg(args, kwargs, 0, "old", ""), _arg(args, kwargs, 1, "new", "")
            size = _replace_size(owner, old, new, _arg(args, kwargs, 2, "count", -1))
        elif name == "join" and args:
            items = _collect(args[0], what)
            args = (items, *args[1:])
            size = sum(_size(i) for i in items) + len(owner) * max(len(items) - 1, 0)
        elif name == "format" and isinstance(owner, str):
            size = _format_size(owner, args, kwargs)
        elif name == "format_map" and isinstance(owner, str) and args and isinstance(args[0], Mapping):
            size = _format_size(owner, (), args[0])
        elif name == "translate" and args and isinstance(args[0], Mapping):
            longest = max((len(v) for v in args[0].values() if isinstance(v, _TEXT)), default=1)
            size = len(owner) * max(longest, 1)
    elif isinstance(owner, int) and name == "to_bytes":
        size = _width(_arg(args, kwargs, 0, "length", 1))
    if size > MAX_VALUE:
        raise _too_big(what)
    return args


# --- filters --------------------------------------------------------------------------------------


def _check_center(what: str, value: Any, width: Any = 80, *_: Any, **__: Any) -> None:
    if _width(width) > MAX_VALUE:
        raise _too_big(what)


def _check_indent(what: str, s: Any, width: Any = 4, *_: Any, **__: Any) -> None:
    indent = _width(width) if isinstance(width, int) else len(str(width))
    lines = s.count("\n") + 1 if isinstance(s, str) else 1
    if max(indent, _size(s) + lines * indent) > MAX_VALUE:
        raise _too_big(what)


def _check_groups(what: str, value: Any, count: Any = 1, *_: Any, **kwargs: Any) -> None:
    # batch(linecount) fills the last batch up to linecount; slice(slices) loops slices times.
    count = kwargs.get("linecount", kwargs.get("slices", count))
    if _width(count) > MAX_RANGE:
        raise TemplateLimitExceeded(f"{what} may be given at most {MAX_RANGE:,}")


def _check_format(what: str, value: Any, *args: Any, **kwargs: Any) -> None:
    if _printf_size(str(value), kwargs or args) > MAX_VALUE:
        raise _too_big(what)


def _check_replace(what: str, s: Any, old: Any = "", new: Any = "", count: Any = None, **__: Any) -> None:
    if _replace_size(str(s), str(old), str(new), -1 if count is None else count) > MAX_VALUE:
        raise _too_big(what)


def _check_join(what: str, items: list[Any], d: Any = "", *_: Any, **kwargs: Any) -> None:
    separator = len(str(kwargs.get("d", d)))
    if sum(_size(i) for i in items) + separator * max(len(items) - 1, 0) > MAX_VALUE:
        raise _too_big(what)


def _check_wordwrap(what: str, s: Any, width: Any = 79, *args: Any, **kwargs: Any) -> None:
    wrapstring = kwargs.get("wrapstring", args[1] if len(args) > 1 else None) or "\n"
    if _size(s) * (1 + len(str(wrapstring))) > MAX_VALUE:  # at worst a line per character
        raise _too_big(what)


def _check_sum(what: str, items: list[Any], attribute: Any = None, start: Any = 0, **kwargs: Any) -> None:
    start = kwargs.get("start", start)
    if isinstance(start, (list, tuple)):  # each addition copies what was added up so far
        total = _size(start) + sum(_size(i) for i in items)
        if total > MAX_VALUE:
            raise _too_big(what)
        if total * len(items) > MAX_WORK:
            raise TemplateLimitExceeded(f"{what} would take too long to add up these lists")


def _check_tojson(what: str, value: Any, indent: Any = None, **kwargs: Any) -> None:
    indent = kwargs.get("indent", indent)
    width = len(indent) if isinstance(indent, str) else _width(indent)
    if (_size(value) + 1) * (width + 1) > MAX_VALUE:
        raise _too_big(what)


_FILTER_CHECKS: dict[str, Callable[..., None]] = {
    "center": _check_center,
    "indent": _check_indent,
    "batch": _check_groups,
    "slice": _check_groups,
    "format": _check_format,
    "replace": _check_replace,
    "join": _check_join,
    "wordwrap": _check_wordwrap,
    "sum": _check_sum,
    "tojson": _check_tojson,
}
_COLLECTING = frozenset({"join", "sum"})  # their input is gathered (bounded) before the check


def _guarded_filter(name: str, func: Any) -> Any:
    # The context, eval context or environment a filter asks for comes before its value.
    skip = 0 if getattr(func, "jinja_pass_arg", None) is None else 1
    what = f"the filter `{name}`"
    check = _FILTER_CHECKS.get(name)

    @wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _budget().tick()
        for value in chain(args[skip:], kwargs.values()):
            if _size(value) > MAX_VALUE:
                raise _too_big(what)
        if name in _COLLECTING and len(args) > skip:
            args = (*args[:skip], _collect(args[skip], what), *args[skip + 1 :])
        if check is not None and len(args) > skip:
            check(what, *args[skip:], **kwargs)
        return _checked(func(*args, **kwargs), what)

    return guarded


# --- hooks the compiled templates call -------------------------------------------------------------


def _guard_loop(iterable: Iterable[Any]) -> Iterator[Any]:
    """What every `for` iterates through: each step counts against the render's loop steps."""
    return _Counted(iterable, None)


@pass_eval_context
def _guard_concat(eval_ctx: nodes.EvalContext, items: tuple[Any, ...]) -> str:
    """`a ~ b ~ c`, refused before joining when the parts add up to more than MAX_VALUE."""
    _budget().tick()
    if sum(_size(i) for i in items) > MAX_VALUE:
        raise _too_big("`~`")
    joined: str = markup_join(items) if eval_ctx.autoescape else str_join(items)
    return _checked(joined, "`~`")


def _finalize(value: Any) -> Any:
    """Every `{{ ... }}` before it prints: a list of big values prints bigger than any of them."""
    if not isinstance(value, (*_TEXT, *_SCALARS)) and _size(value) > MAX_VALUE:
        raise TemplateLimitExceeded(
            f"the template would print a value larger than {_mb(MAX_VALUE)} ({MAX_VALUE:,} characters)"
            f" or holding more than {MAX_ITEMS:,} items"
        )
    return value


class _OutputBuffer(list[str]):
    """What a macro, a `{% set %}` block or a `{% filter %}` block collects before it is used."""

    __slots__ = ("_budget", "_size")

    def __init__(self) -> None:
        super().__init__()
        self._budget = _budget()
        self._size = 0

    def _grow(self, size: int) -> None:
        self._size += size
        if self._size > MAX_OUTPUT:
            raise _output_too_big()
        self._budget.tick()

    def append(self, item: str, /) -> None:
        self._grow(len(item))
        super().append(item)

    def extend(self, items: Iterable[str], /) -> None:
        items = list(items)
        self._grow(sum(len(i) for i in items))
        super().extend(items)


def _hook(name: str, *args: nodes.Node, lineno: int) -> nodes.Call:
    return nodes.Call(
        nodes.EnvironmentAttribute(name, lineno=lineno), list(args), [], None, None, lineno=lineno
    )


class _BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator with every loop, `~` and output buffer going through the bounds."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        guarded = copy(node)
        guarded.iter = _hook("guard_loop", node.iter, lineno=node.iter.lineno)
        guarded.iter.set_environment(self.environment)
        super().visit_For(guarded, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        parts = nodes.Tuple(list(node.nodes), "load", lineno=node.lineno)
        call = _hook("guard_concat", parts, lineno=node.lineno)
        call.set_environment(self.environment)
        self.visit(call, frame)

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.output_buffer()")


def bounded_range(*args: int) -> range:
    numbers = range(*args)
    try:
        asked = f" (asked for {len(numbers):,})"
        too_many = len(numbers) > MAX_RANGE
    except OverflowError:  # more items than an index can hold
        asked, too_many = "", True
    if too_many:
        raise TemplateLimitExceeded(f"range() may give at most {MAX_RANGE:,} items{asked}")
    return numbers


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """ImmutableSandboxedEnvironment with the bounds of this module on every render."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "+", "%", "**"})
    guard_loop = staticmethod(_guard_loop)
    guard_concat = staticmethod(_guard_concat)
    output_buffer = _OutputBuffer

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=_finalize, **options)
        self.globals["range"] = bounded_range
        self.globals.pop("lipsum", None)
        self.filters = {name: _guarded_filter(name, f) for name, f in self.filters.items()}

    def concat(self, parts: Iterable[str]) -> str:
        """How compiled templates join collected output (and a block rendered with self.name())."""
        if isinstance(parts, _OutputBuffer):  # bounded as it was collected
            return "".join(parts)
        budget = _budget()
        collected = []
        size = 0
        for part in parts:
            size += len(part)
            if size > MAX_OUTPUT:
                raise _output_too_big()
            budget.tick()
            collected.append(part)
        return "".join(collected)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _budget().tick()
        what = f"`{operator}`"
        if operator == "*":
            _check_product(left, right, what)
        elif operator == "+":
            if (isinstance(left, _TEXT) and isinstance(right, _TEXT)) or (
                isinstance(left, (list, tuple)) and isinstance(right, (list, tuple))
            ):
                if _size(left) + _size(right) > MAX_VALUE:
                    raise _too_big(what)
        elif operator == "**":
            _check_power(left, right, what)
        elif operator == "%" and isinstance(left, _TEXT):
            if _printf_size(left, right) > MAX_VALUE:
                raise _too_big(what)
        return _checked(self.binop_table[operator](left, right), what)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if __obj is _guard_loop or __obj is _guard_concat:  # the bounds' own hooks
            return __context.call(__obj, *args, **kwargs)
        _budget().tick()
        what = _describe(__obj)
        for value in chain(args, kwargs.values()):
            if _size(value) > MAX_VALUE:
                raise _too_big(what)
        args = _checked_call_args(__obj, args, kwargs, what)
        return _checked(super().call(__context, __obj, *args, **kwargs), what)


_MAX_BITS = MAX_DIGITS * math.log2(10)


def _digits_too_many(what: str) -> TemplateLimitExceeded:
    return TemplateLimitExceeded(f"{what} would build a number of more than {MAX_DIGITS:,} digits")


def _check_product(left: Any, right: Any, what: str) -> None:
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > _MAX_BITS:
            raise _digits_too_many(what)
        return
    for items, times in ((left, right), (right, left)):
        if isinstance(items, (*_TEXT, list, tuple)) and isinstance(times, int) and times > 0:
            many = isinstance(items, (list, tuple)) and len(items) * times > MAX_ITEMS
            if many or _size(items) * times > MAX_VALUE:
                raise _too_big(what)


def _check_power(base: Any, exponent: Any, what: str) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        if math.log2(abs(base)) * exponent > _MAX_BITS:
            raise _digits_too_many(what)
