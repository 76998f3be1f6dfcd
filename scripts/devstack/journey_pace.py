"""The fixed human pace `scripts/bench journey` adds to what it measures, so that journey
times compare across changes: the same page always costs the same reading, the same
form the same typing.

* reading: every visible word at 200 words a minute; Chinese (and any CJK script) at
  400 characters a minute; policy bodies skimmed five times faster (1,000 words,
  2,000 characters a minute);
* typing: 2.5 characters a second;
* 2 s per tap or choice (a button, a link, a checkbox, a radio, a list choice);
* 20 s to fetch each one-time code from the phone or the mailbox.

The human time is computed, never slept; the benchmark adds it to the wall time it
measured for the server and the page loads.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

WORDS_PER_MINUTE = 200.0
CJK_CHARS_PER_MINUTE = 400.0
SKIM_FACTOR = 5.0  # policy bodies: 1,000 words (2,000 CJK characters) a minute
TYPED_CHARS_PER_SECOND = 2.5
SECONDS_PER_TAP = 2.0
SECONDS_PER_CODE = 20.0

# Han (with extensions and compatibility forms), kana, Hangul: read per character.
_CJK = re.compile(
    "[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002ffff]"
)
# A word: letters or digits, joined by an apostrophe, hyphen or dot ("don't", "e-mail",
# "5.0"); punctuation and symbols alone are no word.
_WORD = re.compile(r"[^\W_]+(?:['’.\-][^\W_]+)*")


@dataclass(frozen=True)
class TextCount:
    words: int = 0
    cjk_chars: int = 0

    def __add__(self, other: TextCount) -> TextCount:
        return TextCount(self.words + other.words, self.cjk_chars + other.cjk_chars)


def tokens(text: str) -> list[str]:
    """Each word and each CJK character of `text`, in order (a reading unit each)."""
    found: list[str] = _CJK.findall(text)
    found.extend(_WORD.findall(_CJK.sub(" ", text)))
    return found


def count(units: list[str] | Counter[str]) -> TextCount:
    items = units.elements() if isinstance(units, Counter) else iter(units)
    words = cjk = 0
    for unit in items:
        if _CJK.fullmatch(unit):
            cjk += 1
        else:
            words += 1
    return TextCount(words, cjk)


def count_text(text: str) -> TextCount:
    return count(tokens(text))


def reading_seconds(text: TextCount, *, skim: bool = False) -> float:
    speed = SKIM_FACTOR if skim else 1.0
    minutes = text.words / (WORDS_PER_MINUTE * speed) + text.cjk_chars / (
        CJK_CHARS_PER_MINUTE * speed
    )
    return 60.0 * minutes


def typing_seconds(characters: int) -> float:
    return characters / TYPED_CHARS_PER_SECOND


@dataclass
class Tally:
    """One journey's time, by what it was spent on."""

    read: TextCount = field(default_factory=TextCount)
    skimmed: TextCount = field(default_factory=TextCount)
    typed_chars: int = 0
    taps: int = 0
    codes: int = 0
    measured_s: float = 0.0  # real wall time of the navigations: server and page load
    waited_s: float = 0.0  # real wall time a page took to move on by itself
    pages: int = 0  # page loads the student waited for
    read_by_page: dict[str, TextCount] = field(default_factory=dict)  # where reading goes

    def reading_s(self) -> float:
        return reading_seconds(self.read) + reading_seconds(self.skimmed, skim=True)

    def typing_s(self) -> float:
        return typing_seconds(self.typed_chars)

    def taps_s(self) -> float:
        return self.taps * SECONDS_PER_TAP

    def codes_s(self) -> float:
        return self.codes * SECONDS_PER_CODE

    def human_s(self) -> float:
        return self.reading_s() + self.typing_s() + self.taps_s() + self.codes_s()

    def total_s(self) -> float:
        return self.human_s() + self.measured_s + self.waited_s


class PageReader:
    """What a student reads of each page view: everything the first time a page is seen;
    on a view of the same page again (the contacts page after "Send code"), only what is
    new on it, counted as a multiset difference with the view before."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[Counter[str], Counter[str]]] = {}

    def read(self, page_key: str, text: str, policy_text: str = "") -> tuple[TextCount, TextCount]:
        """(read, skimmed) for this view; `text` is the whole visible text, `policy_text`
        the part of it that is policy bodies (skimmed instead of read)."""
        policy = Counter(tokens(policy_text))
        rest = Counter(tokens(text)) - policy
        before_rest, before_policy = self._last.get(page_key, (Counter(), Counter()))
        self._last[page_key] = (rest, policy)
        return count(rest - before_rest), count(policy - before_policy)

    def remembered(self, page_key: str) -> tuple[Counter[str], Counter[str]]:
        return self._last.get(page_key, (Counter(), Counter()))

    def restore(self, page_key: str, seen: tuple[Counter[str], Counter[str]]) -> None:
        """Back to what `remembered` returned: a view the student never saw (a probe)."""
        self._last[page_key] = seen
