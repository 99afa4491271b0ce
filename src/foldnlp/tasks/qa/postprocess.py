"""Clean predicted QA answers: trim edge punctuation, keeping abbreviation dots and brackets that have a partner.
Each step is one switch of qa.decode.postprocess (PostprocessSettings), so its worth can be checked on the
out-of-fold blend."""

from __future__ import annotations

import re
import unicodedata

from foldnlp.tasks.qa.settings import PostprocessSettings

ALL_STEPS = PostprocessSettings()

# Trimmed from either edge of an answer: every Unicode punctuation character (categories P*: the Hindi danda '।'
# '॥', the Arabic comma, semicolon and question mark '، ؛ ؟', CJK '。、', dashes, quotes, brackets, ...), a few
# symbols that spans drag in, and invisible junk (zero-width space, BOM). Truths rarely carry edge punctuation,
# while spans cut at token boundaries often drag in the sentence's punctuation, and Jaccard splits only on
# whitespace, so 'भारत।' would not match 'भारत'.
_EDGE_SYMBOLS = frozenset("`´|\u200b\ufeff")
# Punctuation that belongs to the answer at its edge: '50%', '#1', 'AT&T', '@user', '§ 3', 'डॉ॰' (the Devanagari
# abbreviation sign).
_KEPT_PUNCTUATION = frozenset("%‰‱٪#&@§¶॰")


def is_edge_punctuation(ch: str) -> bool:
    """Whether clean_answer trims the character ch from an answer's edge."""
    return ch in _EDGE_SYMBOLS or (unicodedata.category(ch).startswith("P") and ch not in _KEPT_PUNCTUATION)


# Bracket-like pairs: an edge one is trimmed only when nothing inside the answer pairs with it (see _partners).
# Straight quotes are their own partner.
PAIRS = {"(": ")", "[": "]", "{": "}", "“": "”", "‘": "’", "«": "»", '"': '"', "'": "'"}
_OPENER_OF = {close: open_ for open_, close in PAIRS.items()}

# Undotted abbreviations that keep their final '.' (compared case-folded). Single letters/aksharas ('A.', 'ई.',
# 'डॉ.') and dotted forms ('U.S.', 'ई.पू.', 'கி.மு.') are recognised by shape instead; see _keeps_final_dot.
ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "st", "jr", "sr", "prof", "vs", "etc", "co", "ltd", "inc", "mt", "ft", "lt", "col",
     "gen", "capt", "rev", "hon", "திரு"}
)

# Each piece of a dotted abbreviation ('ई.पू' -> 'ई', 'पू') is a short letter group; longer pieces ('3.5', 'x.com')
# make it a number or a name whose final dot ends the sentence.
_MAX_PIECE_AKSHARAS = 3
_VIRAMA = 9  # canonical combining class of viramas (Devanagari '्', Tamil '்'): they glue consonants into one akshara
_JOINERS = "\u200c\u200d"  # ZWNJ/ZWJ: shape conjuncts inside an akshara, never start one
_DOT_BREAK = re.compile(r"\.(?:\s|$)")  # a '.' that could end a sentence


def clean_answer(text: str, context: str | None = None, steps: PostprocessSettings = ALL_STEPS) -> str:
    """Trim edge whitespace and edge punctuation (is_edge_punctuation) until nothing changes (idempotent).

    Rules, applied at each edge, each one a switch of `steps` (all on by default):
    - edge whitespace is stripped (strip_whitespace);
    - edge punctuation is trimmed, one character a pass (strip_punctuation), except that
    - an edge bracket/quote is removed only if unpaired inside the answer: 'मराठी (भाषा)' is kept whole
      (keep_paired_brackets);
    - a final '.' stays when the last word is an abbreviation (_keeps_final_dot): 'ई.पू.', 'डॉ.', 'U.S.', 'St.'
      (keep_abbreviation_dots);
    - with the context, a final '.' after a letter also stays if the context ends its sentences with the danda:
      there '.' marks abbreviations, not sentence ends (danda_keeps_dots);
    - a bracket or quote pair enclosing the whole answer is removed: '(1983)' -> '1983' (strip_enclosing_pairs).
    Only edge punctuation/whitespace is ever removed, so an answer with any other character never becomes empty.
    """
    danda_text = steps.danda_keeps_dots and context is not None and _ends_sentences_with_danda(context)
    while True:
        cleaned = _trim_once(text, danda_text, steps)
        if cleaned == text:
            return text
        text = cleaned


def _trim_once(text: str, danda_text: bool, steps: PostprocessSettings) -> str:
    """One pass: strip whitespace, then at most one character (or one enclosing pair) from each edge."""
    if steps.strip_whitespace:
        text = text.strip()
    if len(text) < 2:
        return "" if len(text) == 1 and steps.strip_punctuation and is_edge_punctuation(text) else text
    partners = _partners(text)
    last = len(text) - 1
    if steps.strip_enclosing_pairs and partners.get(0) == last:
        return text[1:-1]
    if not steps.strip_punctuation:
        return text
    kept = partners if steps.keep_paired_brackets else {}
    lo = 1 if is_edge_punctuation(text[0]) and 0 not in kept else 0
    hi = last if is_edge_punctuation(text[-1]) and last not in kept else last + 1
    if hi == last and text[-1] == "." and steps.keep_abbreviation_dots and _keeps_final_dot(text, danda_text):
        hi = last + 1
    return text[lo:hi]


def _partners(text: str) -> dict[int, int]:
    """Position -> position of its partner, for every bracket/quote paired inside text (both directions).

    Each pair type nests on its own stack; a quote between two letters is an apostrophe ("Rama's") and is skipped.
    """
    stacks: dict[str, list[int]] = {}
    partners: dict[int, int] = {}
    for i, ch in enumerate(text):
        if ch not in PAIRS and ch not in _OPENER_OF or _is_apostrophe(text, i):
            continue
        opener = ch if ch in PAIRS else _OPENER_OF[ch]
        stack = stacks.setdefault(opener, [])
        if ch in _OPENER_OF and stack:  # a closer (or a straight quote while one is open) pairs with the last opener
            j = stack.pop()
            partners[i], partners[j] = j, i
        elif ch in PAIRS:
            stack.append(i)
    return partners


def _is_apostrophe(text: str, i: int) -> bool:
    return text[i] in "'’" and 0 < i < len(text) - 1 and text[i - 1].isalpha() and text[i + 1].isalpha()


def _keeps_final_dot(text: str, danda_text: bool) -> bool:
    """Whether text's final '.' belongs to its last word (an abbreviation) rather than ending a sentence.

    The body (last word minus the dot) is a known abbreviation ('St', 'Dr'), a single letter or akshara ('A',
    'ई', 'डॉ'), or dotted short letter groups ('U.S', 'ई.पू', 'கி.மு'). Numbers never qualify: '1983.' -> '1983'.
    """
    body = text.split()[-1][:-1]
    if not body:
        return False
    if body.casefold() in ABBREVIATIONS:
        return True
    if danda_text and (body[-1].isalpha() or unicodedata.category(body[-1]).startswith("M")):
        return True
    pieces = [_count_aksharas(p) for p in body.split(".")]
    if len(pieces) == 1:
        return pieces[0] == 1
    return all(n is not None and 1 <= n <= _MAX_PIECE_AKSHARAS for n in pieces)


def _count_aksharas(word: str) -> int | None:
    """Number of aksharas (a letter with its marks; virama-joined consonants count once); None if not all letters."""
    count, joined = 0, False
    for ch in word:
        category = unicodedata.category(ch)
        if ch in _JOINERS:
            continue
        if category.startswith("M"):
            if count == 0:
                return None
            joined = unicodedata.combining(ch) == _VIRAMA
        elif category.startswith("L"):
            count += not joined
            joined = False
        else:
            return None
    return count


def _ends_sentences_with_danda(context: str) -> bool:
    """True when the danda outnumbers '. ' (dot then whitespace): the context's sentences end with '।'."""
    return context.count("।") > len(_DOT_BREAK.findall(context))
