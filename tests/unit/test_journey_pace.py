"""The fixed human pace of `scripts/bench journey`: what counts as a word, a CJK character,
a re-read, and what each costs."""

from __future__ import annotations

import pytest
from devstack.journey_pace import (
    PageReader,
    Tally,
    TextCount,
    count_text,
    reading_seconds,
    tokens,
    typing_seconds,
)


def test_words_are_letter_or_digit_runs_and_punctuation_is_no_word() -> None:
    assert count_text("Step 1 of 5 — Your phone and email.") == TextCount(words=8)
    assert count_text("Don't share it: e-mail j000001@registry.example.edu") == TextCount(words=6)
    assert count_text("+853 ••••1234 · » …") == TextCount(words=2)
    assert count_text("") == TextCount()


def test_accented_portuguese_words_count_once_each() -> None:
    assert count_text("Ative a sua conta: código de ativação") == TextCount(words=7)


def test_chinese_is_counted_per_character_and_mixed_text_both_ways() -> None:
    assert count_text("啟用帳戶") == TextCount(cjk_chars=4)
    # Latin words inside Chinese text are still words; CJK punctuation is nothing.
    assert count_text("輸入 UMPASS 用戶名稱，然後按「繼續」。") == TextCount(words=1, cjk_chars=11)
    assert tokens("第1步") == ["第", "步", "1"]


def test_reading_speeds() -> None:
    assert reading_seconds(TextCount(words=200)) == pytest.approx(60)
    assert reading_seconds(TextCount(cjk_chars=400)) == pytest.approx(60)
    assert reading_seconds(TextCount(words=1000), skim=True) == pytest.approx(60)
    assert reading_seconds(TextCount(cjk_chars=2000), skim=True) == pytest.approx(60)
    assert reading_seconds(TextCount(words=100, cjk_chars=200)) == pytest.approx(60)


def test_a_journeys_parts_add_up() -> None:
    tally = Tally(
        read=TextCount(words=400),  # 120 s
        skimmed=TextCount(words=500),  # 30 s
        typed_chars=25,  # 10 s
        taps=10,  # 20 s
        codes=2,  # 40 s
        measured_s=3.5,
    )
    assert typing_seconds(25) == pytest.approx(10)
    assert tally.human_s() == pytest.approx(220)
    assert tally.total_s() == pytest.approx(223.5)


def test_a_page_seen_again_costs_only_what_is_new_on_it() -> None:
    reader = PageReader()
    first = "Your phone and email. Send code Send code Continue"
    assert reader.read("contacts", first) == (TextCount(words=9), TextCount())
    again = "Your phone and email. We sent a code. Code from the email Send code Continue"
    # New: "We sent a", "Code from the email" minus one "code"/"Send" already there...
    read, skimmed = reader.read("contacts", again)
    assert read == TextCount(words=7) and skimmed == TextCount()
    # Another page is read whole, and policy bodies are skimmed, not read.
    read, skimmed = reader.read("policies", "Accept it. Rules here", policy_text="Rules here")
    assert (read, skimmed) == (TextCount(words=2), TextCount(words=2))


def test_a_view_the_student_never_saw_is_forgotten() -> None:
    reader = PageReader()
    reader.read("contacts", "Send code Continue")
    seen = reader.remembered("contacts")
    reader.read("contacts", "There is a problem Send code Continue")
    reader.restore("contacts", seen)
    assert reader.read("contacts", "Send code Continue") == (TextCount(), TextCount())
