"""Reading user-supplied files with a size cap, without ever holding more than the cap.

``f.read(limit + 1)`` would allocate ``limit`` bytes up front whatever the file's size; reading
in chunks keeps memory proportional to what the file really holds."""

from __future__ import annotations

CHUNK_BYTES = 1024 * 1024


class TooLarge(Exception):
    """The stream holds more than the cap."""


def read_at_most(stream, limit: int) -> bytes:
    """The whole of a binary stream; raises TooLarge (having read at most ``limit`` + one chunk)
    when it holds more than ``limit`` bytes."""
    chunks: list[bytes] = []
    total = 0
    while chunk := stream.read(min(CHUNK_BYTES, limit + 1 - total) or 1):
        total += len(chunk)
        if total > limit:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def iter_chunks(stream, limit: int):
    """The stream's chunks; raises TooLarge once more than ``limit`` bytes came."""
    total = 0
    while chunk := stream.read(CHUNK_BYTES):
        total += len(chunk)
        if total > limit:
            raise TooLarge
        yield chunk
