"""The base every payload Struct derives from; its own module so each source family can import it."""
from __future__ import annotations

from typing import ClassVar

import msgspec


class Payload(msgspec.Struct, tag_field="type", omit_defaults=True, gc=False):
    """Base of every payload; the tag (`type`) is the event type, e.g. `telemetry.request`.

    Required fields come first, so a payload can be built positionally from its base-format
    twin (see schemas.wire) without a second validation pass.
    """

    SOURCE: ClassVar[str] = ""
