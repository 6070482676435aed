"""Type aliases shared by the codecs."""

from __future__ import annotations

from typing import TypeAlias

#: Anything a codec can read from or a device can write: received frames
#: arrive as ``bytes``, views into them are ``memoryview`` slices, and frames
#: being built are ``bytearray``.
BytesLike: TypeAlias = bytes | bytearray | memoryview
