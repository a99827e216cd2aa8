"""Unit tests of api_poller.core.page_bits: sets of pages as compact bitmaps."""

from __future__ import annotations

import base64
import random
import zlib

import pytest

from api_poller.core.page_bits import (
    MAX_PAGE_NUMBER,
    PageBits,
    decode_pages,
    encode_pages,
    page_id_of,
    page_number,
    page_numbers,
    pages_mask,
    range_mask,
)


@pytest.mark.parametrize(
    ("page", "number"),
    [("page-000000", 0), ("page-000042", 42), ("page-1234567", 1234567), (page_id_of(99), 99)],
)
def test_page_numbers_of_page_ids(page: str, number: int) -> None:
    assert page_number(page) == number


@pytest.mark.parametrize(
    "text", ["", "page-", "page--1", "page-4x", "Page-000001", "page-١٢", "42", "page-" + "9" * 12]
)
def test_anything_else_is_not_a_page(text: str) -> None:
    assert page_number(text) is None


def test_a_set_round_trips_through_its_text() -> None:
    numbers = random.Random(7).sample(range(200_000), 5_000)
    bits = PageBits()
    for number in numbers:
        bits.add(number)
    assert decode_pages(bits.encode()) == pages_mask(numbers)
    assert list(page_numbers(decode_pages(bits.encode()))) == sorted(numbers)


def test_a_set_of_a_hundred_thousand_pages_done_in_order_is_tiny() -> None:
    assert len(encode_pages(range_mask(1, 100_000))) < 100


def test_discard_removes_only_that_page() -> None:
    bits = PageBits()
    for number in (1, 2, 3, 900):
        bits.add(number)
    bits.discard(2)
    bits.discard(10_000)  # never there: nothing happens
    assert list(page_numbers(bits.as_int())) == [1, 3, 900]


def test_slices_of_a_set_by_position() -> None:
    mask = pages_mask(range(0, 30_000, 3))  # 10,000 pages
    assert list(page_numbers(mask, 0, 3)) == [0, 3, 6]
    assert list(page_numbers(mask, 9_998, 5)) == [29_994, 29_997]
    assert list(page_numbers(mask, 5_000, 2)) == [15_000, 15_003]
    assert list(page_numbers(mask, 10_000, 5)) == []
    assert list(page_numbers(0, 0, 5)) == []
    assert list(page_numbers(mask, 0, 0)) == []


def test_a_range_is_inclusive() -> None:
    assert list(page_numbers(range_mask(3, 6))) == [3, 4, 5, 6]
    assert range_mask(5, 4) == 0


@pytest.mark.parametrize("text", [None, 42, "not base64!", base64.b64encode(b"not zlib").decode()])
def test_a_set_that_is_not_one_is_refused(text: object) -> None:
    with pytest.raises(ValueError):
        decode_pages(text)


def test_a_set_larger_than_any_job_is_refused_without_inflating_it() -> None:
    bomb = base64.b64encode(zlib.compress(b"\xff" * (MAX_PAGE_NUMBER // 8 + 10))).decode()
    with pytest.raises(ValueError, match="larger than any job"):
        decode_pages(bomb)
