"""Guessing where to split a key space: boundaries for listing one prefix as concurrent key ranges.

Used by every backend whose listing can start after a key (S3 StartAfter / KeyMarker, GCS startOffset /
endOffset). Boundaries only shape the work: any increasing boundaries inside the open interval partition the
keys exactly, so a poor guess costs a few requests, never correctness.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..meta import ObjectMeta


@dataclass(frozen=True)
class KeyRange:
    """A slice of one folder's listing, in its backend's own positions (plain strings: it is planned on one
    machine, listed on another and kept in checkpoints): `start` and `end` bound the keys (which bound is
    inclusive is the backend's convention), `skip` is a key already produced that the listing may return
    again at `start`, `resume` the store's own continuation inside the slice (opaque). `KeyRange()` is the
    whole folder."""

    start: str | None = None
    end: str | None = None
    skip: str | None = None
    resume: str | None = None


@dataclass
class RangeListing:
    """One step through a `KeyRange`: the live `objects` found, the `rest` of the range still to list (None:
    the range is done), the last page's keys (`sample`, to split `rest` by), whether `rest` may be split (the
    store's positions proved exact), and `disorder`: how the store broke the key order positions rely on
    (then only a listing of the whole folder as one unsplit chain is exact)."""

    objects: list[ObjectMeta]
    rest: KeyRange | None
    sample: list[str] = field(default_factory=list)
    splittable: bool = True
    disorder: str | None = None


#: split ranges grow by this factor: parts hold ~1, 4, 16, ... sample-widths of names (see `split_points`)
GROWTH = 4


def split_points(
    prefix: str, sample: Sequence[str], end: str | None, parts: int, *, lead: int = 1, even_only: bool = False
) -> list[str]:
    """Up to `parts - 1` increasing boundaries strictly between `sample[-1]` (the last name listed) and `end`
    (exclusive; None = the end of the prefix), estimated from `sample`, the range's last page of names.

    Boundaries only shape the work: any increasing boundaries inside (sample[-1], end) partition the remaining
    names exactly, so a poor guess costs a few requests, never correctness. Three kinds of guesses are mixed:
    - density: names read as numbers in a radix made of the characters seen (digit 0 = end of name), so
      counting names (`img_000123.jpg`) and hash-like names map to a roughly linear scale; the parts are
      predicted to hold about 1, 4, 16, ... samples' worth of names (`GROWTH`);
    - scale: the smallest names past each character of the directory part of the last name, deepest first
      (`class000/0099.png` → `class001`, `class01`, `class1`, ...), which reach the next directory, month or
      magnitude when the sample saw a single directory;
    - even: with a known end, the span left split evenly on the numeric scale.

    `lead` scales the density guess (its first part holds `lead` samples' worth); `even_only` keeps only the
    even guess when the end is known (equal parts, each worth listing on its own).
    """
    if parts < 2 or len(sample) < 2:
        return []
    after = sample[-1]
    cut = len(prefix)
    numbers = _Scale(prefix, sample, end)
    encode, decode = numbers.encode, numbers.decode
    bounded = end is not None and end.startswith(prefix)
    low, first = encode(after), encode(sample[0])
    high = encode(end) if end is not None and bounded else numbers.radix**numbers.width
    wanted = parts - 1
    step = max(1, low - first)
    density = [decode(low + step * lead * GROWTH**t) for t in range(wanted) if low + step * lead * GROWTH**t < high]
    # "scale": the smallest name past each character of the directory names in `after`, deepest first
    # (`class000/0099.png` → `class001`, `class01`, `class1`, ...): the next directory, month or magnitude
    last_slash = after.rfind("/")
    scale: list[str] = []
    for j in range(last_slash - 1, cut - 1, -1):
        code = ord(after[j]) + 1
        if after[j] != "/" and code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
            scale.append(after[:j] + chr(code))
    even = [decode(low + (high - low) * t // parts) for t in range(1, parts)] if bounded else []
    sources = ([even] if even_only else [even, scale, density]) if even else [scale, density]
    chosen: set[str] = set()
    for i in range(max(map(len, sources))):
        for source in sources:
            if i < len(source) and len(chosen) < wanted:
                point = source[i]
                if point > after and (end is None or point < end):
                    chosen.add(point)
    return sorted(chosen)


class _Scale:
    """Names under `prefix` read as numbers in a radix made of the characters seen (digit 0 = end of name):
    counting names and hash-like names map to a roughly linear scale."""

    def __init__(self, prefix: str, sample: Sequence[str], end: str | None) -> None:
        self.prefix = prefix
        cut = len(prefix)
        end_suffix = end[cut:] if end is not None and end.startswith(prefix) else ""
        self.alphabet = sorted(set("".join(s[cut:] for s in sample)) | set(end_suffix))
        self.radix = len(self.alphabet) + 1
        self.width = max(len(sample[0]), len(sample[-1]), len(end or "")) - cut + 2

    def encode(self, name: str) -> int:
        text = name[len(self.prefix) :]
        value = 0
        for j in range(self.width):
            digit = bisect.bisect_right(self.alphabet, text[j]) if j < len(text) else 0
            value = value * self.radix + digit
        return value

    def decode(self, value: int) -> str:
        digits = []
        for _ in range(self.width):
            value, digit = divmod(value, self.radix)
            digits.append(digit)
        chars = []
        for digit in reversed(digits):
            if digit == 0:
                break
            chars.append(self.alphabet[digit - 1])
        return self.prefix + "".join(chars)


def names_before(prefix: str, sample: Sequence[str], end: str) -> float:
    """About how many names lie between `sample[-1]` and `end`, at the density `sample` shows (ascending names
    of one page); inf when the sample cannot tell."""
    if len(sample) < 2 or not end.startswith(prefix):
        return float("inf")
    scale = _Scale(prefix, sample, end)
    first, last, stop = scale.encode(sample[0]), scale.encode(sample[-1]), scale.encode(end)
    if last <= first:
        return float("inf")
    return max(0.0, (stop - last) * (len(sample) - 1) / (last - first))


def name_ahead(prefix: str, sample: Sequence[str], samples: float) -> str | None:
    """The name about `samples` sample-widths past `sample[-1]`, at the density `sample` shows; None when the
    sample cannot tell."""
    if len(sample) < 2:
        return None
    scale = _Scale(prefix, sample, None)
    first, last = scale.encode(sample[0]), scale.encode(sample[-1])
    if last <= first:
        return None
    name = scale.decode(last + int((last - first) * samples))
    return name if name > sample[-1] else None
