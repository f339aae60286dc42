"""Text for a terminal: wrapped to its width, never cut inside a word, "…" where it is shortened."""

from __future__ import annotations

import io

import pytest
from cekura_labs_mcp.server.presenting import one_line, shorten, terminal_width, wrap

REASON = ('At 00:14 the agent said "Could you confirm your date of birth and your full name for me?"; the judge '
          "misread the call, it should be TRUE. See https://example.invalid/a-very-long-link-that-is-one-word")


@pytest.mark.parametrize("width", [30, 33, 60, 100])
def test_wrap_fits_the_width_and_keeps_every_word_whole(width: int) -> None:
    text = wrap(REASON, width, first="     person: ", indent="       ")
    lines = text.splitlines()
    assert lines[0].startswith("     person: ") and all(line.startswith("       ") for line in lines[1:])
    # Only a single word longer than a line may overflow, alone on its line.
    assert all(len(line) <= width or len(line.split()) == 1
               for line in lines)
    assert text.replace("person:", "").split() == REASON.split()


def test_wrap_keeps_paragraphs_apart() -> None:
    assert wrap("one two\nthree", 40, indent="  ") == "  one two\n  three"


@pytest.mark.parametrize("width", [10, 25, 50, 80])
def test_shorten_cuts_between_words_with_an_ellipsis(width: int) -> None:
    short = shorten(REASON, width)
    assert len(short) <= width and short.endswith("…")
    words = short[:-1].split()
    assert words == REASON.split()[:len(words)]  # whole words, in order: nothing cut inside a word
    assert shorten("short enough", max(width, 12)) == "short enough"


def test_one_line_no_longer_cuts_mid_word() -> None:
    assert one_line("alpha beta gamma delta", 14) == "alpha beta…"


def test_terminal_width_of_a_pipe_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    assert terminal_width(io.StringIO(), fallback=88) == 88
    monkeypatch.setenv("COLUMNS", "61")
    assert terminal_width(io.StringIO()) == 61
