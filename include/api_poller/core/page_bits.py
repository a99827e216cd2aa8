"""Sets of pages as bitmaps: bit ``n`` is page ``n`` (``page-00000n``).

A job's page statuses are published as one set of pages per state rather than one record per
page: a set of 100,000 pages done in order compresses to a few dozen bytes, merging the sets of
every task is a bitwise OR of Python ints, and counting a state is ``int.bit_count``. Bitmaps
travel as text (zlib, then base64) inside the tasks' status XComs and checkpoints.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Iterable, Iterator

PAGE_PREFIX = "page-"
# Page numbers above this are not pages of a job (a malformed id must not allocate gigabytes).
MAX_PAGE_NUMBER = 10**9
_MAX_ENCODED_BYTES = MAX_PAGE_NUMBER // 8 + 1
_BLOCK = 4096  # bits per block when seeking the n-th page of a set


def page_number(page_id: str) -> int | None:
    """42 for ``page-000042``; None for anything that is not a page id."""
    digits = page_id.removeprefix(PAGE_PREFIX)
    if digits == page_id or not digits.isascii() or not digits.isdigit():
        return None
    number = int(digits)
    return number if number <= MAX_PAGE_NUMBER else None


def page_id_of(number: int) -> str:
    """``core.planning.page_id``'s spelling (kept here so this module stands alone)."""
    return f"{PAGE_PREFIX}{number:06d}"


class PageBits:
    """A mutable set of page numbers (a growable bitmap)."""

    __slots__ = ("_bytes",)

    def __init__(self) -> None:
        self._bytes = bytearray()

    def add(self, number: int) -> None:
        index = number >> 3
        if index >= len(self._bytes):
            self._bytes.extend(bytes(index + 1 - len(self._bytes)))
        self._bytes[index] |= 1 << (number & 7)

    def discard(self, number: int) -> None:
        index = number >> 3
        if index < len(self._bytes):
            self._bytes[index] &= ~(1 << (number & 7)) & 0xFF

    def as_int(self) -> int:
        return int.from_bytes(self._bytes, "little")

    def encode(self) -> str:
        return encode_pages(self.as_int())


def encode_pages(mask: int) -> str:
    """A set of pages (an int bitmap) as compact text."""
    raw = mask.to_bytes((mask.bit_length() + 7) // 8, "little")
    return base64.b64encode(zlib.compress(raw, 6)).decode("ascii")


def decode_pages(text: object) -> int:
    """The bitmap ``encode_pages`` wrote; ValueError for anything else."""
    if not isinstance(text, str):
        raise ValueError("a page set is text")
    try:
        decompressor = zlib.decompressobj()
        raw = decompressor.decompress(base64.b64decode(text, validate=True), _MAX_ENCODED_BYTES)
    except (binascii.Error, zlib.error) as error:
        raise ValueError(f"not a page set: {error}") from None
    if decompressor.unconsumed_tail:
        raise ValueError("a page set larger than any job")
    return int.from_bytes(raw, "little")


def pages_mask(numbers: Iterable[int]) -> int:
    bits = PageBits()
    for number in numbers:
        bits.add(number)
    return bits.as_int()


def range_mask(first: int, last: int) -> int:
    """Pages ``first`` .. ``last`` (inclusive)."""
    return 0 if last < first else ((1 << (last + 1)) - 1) ^ ((1 << first) - 1)


def page_numbers(mask: int, offset: int = 0, limit: int | None = None) -> Iterator[int]:
    """The pages of ``mask`` in order, from the ``offset``-th (0-based), at most ``limit`` of them.

    Seeking the offset counts whole blocks of bits at C speed, so a late slice of a large set
    costs about as much as an early one.
    """
    if mask <= 0 or (limit is not None and limit <= 0):
        return
    bits = bin(mask)[:1:-1]  # bit 0 first
    start = 0
    while offset and start < len(bits):
        ones = bits.count("1", start, start + _BLOCK)
        if ones > offset:
            break
        offset -= ones
        start += _BLOCK
    position = bits.find("1", start)
    yielded = 0
    while position >= 0:
        if offset:
            offset -= 1
        else:
            yield position
            yielded += 1
            if limit is not None and yielded >= limit:
                return
        position = bits.find("1", position + 1)
