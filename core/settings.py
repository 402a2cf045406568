"""Reading a process's settings at start: a setting that cannot work stops the process with one line per
problem, naming the `TTRV_*` variable, instead of a traceback (or, worse, a failure on the first request)."""

from __future__ import annotations

import sys
from typing import TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

S = TypeVar("S", bound=BaseSettings)


def settings_problems(err: ValidationError) -> list[str]:
    """One line per problem, naming the variable.

    >>> from pydantic import Field
    >>> class Demo(BaseSettings):
    ...     port: int = Field(default=1, ge=1)
    >>> try:
    ...     Demo(port=0)
    ... except ValidationError as err:
    ...     print(settings_problems(err))
    ['TTRV_PORT: Input should be greater than or equal to 1']
    """
    lines = []
    for error in err.errors():
        where = "_".join(str(p) for p in error["loc"]).upper()
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"TTRV_{where}: {message}" if where else message)
    return lines


def read_settings(cls: type[S], process: str) -> S:
    """`cls()` from the environment, or exit 2 with the problems on stderr."""
    try:
        return cls()
    except ValidationError as err:
        print(f"{process}: the settings cannot work:", file=sys.stderr)
        for line in settings_problems(err):
            print(f"  {line}", file=sys.stderr)
        raise SystemExit(2) from None
