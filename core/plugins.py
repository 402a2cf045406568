"""Your own task, plugged in: the answer extractor and the reward, chosen by configuration.

A setting such as `TTRV_ANSWER_EXTRACTOR` (or `TTRV_REWARD`) names a built-in (`default`) or a function
`package.module:function` importable by the process (put its package on `PYTHONPATH`). It is imported when
the settings are read, so a wrong path stops the gateway or the worker at start, with a message that names
the setting and what went wrong, instead of failing on the first request.

The answer extractor decides what counts as "the same answer": the vote at serve time, the reward's groups,
the gate's collapse guards and every accuracy (`core.answers.is_correct`). Its signature:

    def extract(text: str | None, options: Sequence[str] | None) -> str | None

`text` is one response (or a label, read the same way); `options` are the multiple-choice options of the
request, if any. Return the answer in a canonical spelling, or None when the response gives no answer
(None never votes, so an empty response cannot win a vote). It must be pure and cheap: it runs on every
sampled answer.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def load_plugin(spec: str, builtins: Mapping[str, T], variable: str) -> T | Callable[..., Any]:
    """The built-in named `spec`, or the callable `package.module:attribute` it names.

    >>> load_plugin("default", {"default": len}, "TTRV_X") is len
    True
    >>> load_plugin("math:sqrt", {}, "TTRV_X")(9.0)
    3.0
    >>> load_plugin("nope", {"default": len}, "TTRV_X")
    Traceback (most recent call last):
    ...
    ValueError: TTRV_X='nope' is neither a built-in (default) nor package.module:function
    >>> load_plugin("no_such_pkg.mod:f", {}, "TTRV_X")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: TTRV_X='no_such_pkg.mod:f': cannot import module 'no_such_pkg.mod' (No module named ...
    """
    if spec in builtins:
        return builtins[spec]
    module_name, colon, attribute = spec.partition(":")
    known = ", ".join(builtins) or "none"
    if not colon or not module_name or not attribute:
        raise ValueError(f"{variable}={spec!r} is neither a built-in ({known}) nor package.module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(
            f"{variable}={spec!r}: cannot import module {module_name!r} ({err}); put its package on the "
            f"PYTHONPATH of the gateway and the worker, or use a built-in ({known})"
        ) from None
    found = getattr(module, attribute, None)
    if not callable(found):
        raise ValueError(f"{variable}={spec!r}: module {module_name!r} has no function {attribute!r}")
    return found  # type: ignore[no-any-return]
