"""Reading what RQ stores zlib-compressed (a job's `data`, a result's traceback) without trusting its size:
a forged 1 MB hash can inflate to gigabytes, so nothing here inflates past MAX_INFLATED_BYTES."""

from __future__ import annotations

import zlib

from ..errors import JobError

MAX_INFLATED_BYTES = 64 * 1024 * 1024  # far above any real payload ("pass IDs, not objects"), far below a bomb
INFLATE_CHUNK_BYTES = 1024 * 1024  # what inflate_tail holds at once besides the tail it keeps


class PayloadTooLarge(JobError):
    """Raised when compressed data would inflate past its cap."""


def inflate(data: bytes, limit_bytes: int = MAX_INFLATED_BYTES) -> bytes:
    """`data` inflated, as RQ reads a job's `data` (data that is not a whole zlib stream is taken as it is),
    but never past `limit_bytes`: PayloadTooLarge instead. Inflated a chunk at a time, so a bomb costs at
    most `limit_bytes` (plus a chunk) before it is refused."""
    inflater = zlib.decompressobj()
    chunks: list[bytes] = []
    total, pending = 0, data
    try:
        while True:
            chunk = inflater.decompress(pending, INFLATE_CHUNK_BYTES)
            pending = inflater.unconsumed_tail
            total += len(chunk)
            if total > limit_bytes:
                raise PayloadTooLarge(
                    f"its payload inflates past {limit_bytes} bytes ({len(data)} bytes compressed)",
                    hint="bench-jobs did not write it: jobs carry IDs, not data. Delete it with purge-jobs.",
                )
            chunks.append(chunk)
            if inflater.eof or not (chunk or pending):
                break
    except zlib.error:
        return data
    return b"".join(chunks) if inflater.eof else data


def inflate_tail(data: bytes, keep_bytes: int, limit_bytes: int = MAX_INFLATED_BYTES) -> tuple[bytes, bool]:
    """The last `keep_bytes` of zlib `data` inflated (a traceback's end says what was raised), holding at most
    INFLATE_CHUNK_BYTES more at once, and whether anything before them was cut. PayloadTooLarge past
    `limit_bytes` in all; zlib.error when `data` is not zlib."""
    inflater = zlib.decompressobj()
    tail, total, pending = b"", 0, data
    while True:
        chunk = inflater.decompress(pending, INFLATE_CHUNK_BYTES)
        pending = inflater.unconsumed_tail
        total += len(chunk)
        if total > limit_bytes:
            raise PayloadTooLarge(f"it inflates past {limit_bytes} bytes ({len(data)} bytes compressed)")
        tail = (tail + chunk)[-keep_bytes:]
        if inflater.eof or not (chunk or pending):
            return tail, total > len(tail)
