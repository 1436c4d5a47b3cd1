"""Turkish-aware search text: one normalisation (``fold``), applied to the stored text and to the query
alike, and the index terms derived from it.

``fold`` makes these all match one another:

- the four Turkish i's: ``İ``, ``I``, ``i``, ``ı`` (``str.casefold`` alone turns ``İ`` into ``i̇``,
  ``i`` plus a combining dot, and leaves ``ı`` as it is);
- Turkish letters and their Latin base: ``ş``→``s``, ``ğ``→``g``, ``ç``→``c``, ``ö``→``o``, ``ü``→``u``,
  and every other diacritic (``â``→``a``, ``é``→``e``), so ``sisli`` finds "ŞİŞLİ" and ``istanbul``
  finds "İstanbul";
- case (``casefold``: ``ß``→``ss``), and runs of whitespace (one space, none at the ends).

Text is stored and shown as written; only the search columns hold folded text.
"""

from __future__ import annotations

import unicodedata

_TURKISH_I = str.maketrans({"İ": "i", "I": "i", "ı": "i"})
#: Between title and description in the search document, so no match spans the two fields.
FIELD_SEPARATOR = "\x1f"
#: Queries shorter than this are served by the 1-2 character index (a trigram index cannot).
TRIGRAM = 3


def fold(text: str) -> str:
    """The normalised form both stored text and queries are compared in."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_TURKISH_I).casefold())
    stripped = "".join(char for char in decomposed if not unicodedata.combining(char))
    # Control characters (and our field separator) never reach the index or a query.
    return " ".join("".join(char if char.isprintable() else " " for char in stripped).split())


def document(title: str, description: str) -> str:
    """What the substring index holds for a listing."""
    return f"{fold(title)}{FIELD_SEPARATOR}{fold(description)}"


def short_terms(text: str) -> list[str]:
    """Every distinct 1- and 2-character substring of each field, as index terms (``g`` + hex of
    the UTF-8 bytes, so any character, punctuation included, is one token of a plain tokenizer)."""
    grams: set[str] = set()
    for field in text.split(FIELD_SEPARATOR):
        for i, char in enumerate(field):
            grams.add(char)
            if i + 1 < len(field):
                grams.add(field[i : i + 2])
    return sorted(short_term(gram) for gram in grams if gram.strip() == gram and gram)


def short_term(gram: str) -> str:
    """The index term of a 1- or 2-character (folded) string."""
    return "g" + gram.encode().hex()


def fts_phrase(folded: str) -> str:
    """An FTS5 query that matches ``folded`` as a literal string: one double-quoted phrase, quotes
    doubled, so nothing in a user's query (``OR``, ``NEAR``, ``*``, ``-``, ``:``, ``"``) is syntax."""
    return '"' + folded.replace('"', '""') + '"'


def like_pattern(folded: str) -> str:
    """A LIKE pattern matching ``folded`` anywhere, with ``\\``, ``%`` and ``_`` escaped (``ESCAPE '\\'``)."""
    escaped = folded.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
