"""`clients/wire.py`, the SDK's reply models, generated from the server's own (`core/wire.py`).

The SDK imports no project package (it installs with httpx and pydantic alone), so it cannot import
`core.wire`; instead the reply models are written out from it, field by field (type, default, help text),
with `extra="ignore"` so that a newer server adding a field does not break an older client. A test
compares the file with this output (as syntax trees); `python -m stack.sdk_wire` rewrites it after a change
to `core/wire.py`.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from core import wire

TARGET = Path(__file__).parents[1] / "clients" / "wire.py"

# The replies a client reads, in dependency order (a model before the models that contain it).
REPLY_MODELS: list[type[BaseModel]] = [
    wire.AnswerResponse,
    wire.FeedbackResponse,
    wire.AdapterInfo,
    wire.AdapterMove,
    wire.AdapterList,
    wire.AdaptationState,
    wire.ErrorDetail,
    wire.ErrorEnvelope,
    wire.ComponentState,
    wire.ReadyResponse,
]

HEADER = '''"""Reply models of the TTRV gateway, as the SDK reads them. GENERATED: do not edit.

Written by `python -m stack.sdk_wire` from the server's definitions in `core/wire.py` (a test checks that
this file is current). Unknown fields are ignored, so a newer server that adds one does not break this client.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
'''


def annotation(field: FieldInfo) -> str:
    """A field's type as source text, with module prefixes dropped (`list[core.wire.AdapterInfo]`).

    >>> fields = wire.AdapterList.model_fields
    >>> annotation(fields["versions"]), annotation(fields["current"])
    ('list[AdapterInfo]', 'int')
    """
    tp = field.annotation
    text = tp.__name__ if isinstance(tp, type) else repr(tp)
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)", r"\1", text)


def field_source(name: str, field: FieldInfo) -> str:
    """One field as a line of a model's source: its type, default or factory, and help text."""
    args = []
    if field.default_factory is not None:
        args.append(f"default_factory={field.default_factory.__name__}")
    elif field.default is not PydanticUndefined:
        args.append(f"default={field.default!r}")
    if field.description:
        args.append(f"description={field.description!r}")
    if not args:
        return f"    {name}: {annotation(field)}"
    if args[0].startswith("default=") and len(args) == 1:
        return f"    {name}: {annotation(field)} = {field.default!r}"
    return f"    {name}: {annotation(field)} = Field({', '.join(args)})"


def model_source(model: type[BaseModel]) -> str:
    doc = inspect.getdoc(model)
    lines = [f"class {model.__name__}(BaseModel):"]
    if doc and doc != inspect.getdoc(BaseModel):
        lines.append(f'    """{doc}"""')
        lines.append("")
    lines.append('    model_config = ConfigDict(extra="ignore")')
    lines.append("")
    lines += [field_source(name, field) for name, field in model.model_fields.items()]
    return "\n".join(lines)


def sdk_wire_source() -> str:
    return HEADER + "".join(f"\n\n{model_source(m)}\n" for m in REPLY_MODELS)


if __name__ == "__main__":
    TARGET.write_text(sdk_wire_source())
    # The project's formatter has the last word on layout; the test compares syntax trees, not layout.
    subprocess.run([sys.executable, "-m", "ruff", "format", "--quiet", str(TARGET)], check=True)
