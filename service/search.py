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

Beside the substring indexes, a word index narrows a query of 3 or more characters to the listings that
can hold it (``word_terms``, ``WordQuery``): a match never depends on it, every candidate is checked for
the substring itself.
"""

from __future__ import annotations

import hashlib
import itertools
import unicodedata
from collections.abc import Sequence

_TURKISH_I = str.maketrans({"İ": "i", "I": "i", "ı": "i"})
#: Between title and description in the search document, so no match spans the two fields.
FIELD_SEPARATOR = "\x1f"
#: Queries shorter than this are served by the 1-2 character index (a trigram index cannot).
TRIGRAM = 3
#: A word, or two adjacent words, longer than this (UTF-8 bytes) is indexed by its digest: an index key
#: has a size limit, and a long word narrows as well by its digest.
LONG_TERM = 64
#: A long query is narrowed by this many of its requirements, those of fewest terms first: each more
#: is a posting list read to the end when nothing matches, and a few pairs of words are already rare.
MAX_REQUIREMENTS = 4
#: A query part that stands for more words than this (``WordQuery.narrowing``) is not narrowed by them:
#: so many words make the index lookup itself the cost, and the listings holding one of them are many.
MAX_WORDS = 1000


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


def term(text: str) -> str:
    """The word index's term for a word, or for two adjacent words (``"daire satilik"``).

    A term longer than ``LONG_TERM`` bytes is a space and its digest: no word holds a space, and two
    words never start with one, so a digest never stands for another term."""
    raw = text.encode()
    if len(raw) <= LONG_TERM:
        return text
    return " " + hashlib.blake2b(raw, digest_size=16).hexdigest()


def words(doc: str) -> list[str]:
    """The distinct words of a search document (``document``), for the vocabulary."""
    return sorted({word for field in doc.split(FIELD_SEPARATOR) for word in field.split(" ") if word})


#: A word written this many times in a row, or more, is one term: a query repeating a word k times
#: needs a listing that repeats it at least k times (up to this many), not merely three times.
LONGEST_RUN = 8


def word_terms(doc: str, longest_run: int = LONGEST_RUN) -> list[str]:
    """The word index's terms for a search document: each distinct word and each distinct pair of
    adjacent words of a field (a pair never spans the title and the description), and a word written
    k times in a row for each k from 3 to its run's length, at most ``longest_run`` (``"ev ev ev"``: a
    query repeating one word is as narrow as its repeats). ``longest_run=3``: the terms schema 5 wrote
    (``service.db`` migration 6 adds the rest)."""
    terms: set[str] = set()
    for field in doc.split(FIELD_SEPARATOR):
        tokens = field.split(" ") if field else []
        terms.update(map(term, tokens))
        terms.update(term(f"{left} {right}") for left, right in itertools.pairwise(tokens))
        for word, length in runs(tokens):
            terms.update(term(" ".join([word] * k)) for k in range(3, min(length, longest_run) + 1))
    return sorted(terms)


def runs(tokens: Sequence[str]) -> list[tuple[str, int]]:
    """Each word written 3 or more times in a row, with how many times (``["a", "a", "a", "b"]``:
    ``[("a", 3)]``)."""
    found = []
    for word, group in itertools.groupby(tokens):
        length = sum(1 for _ in group)
        if length >= 3:
            found.append((word, length))
    return found


#: The text indexes also hold each listing's city and price band (and, on PostgreSQL, its id band),
#: terms with a space first (never a word's), so one index search meets the text and the filters.
ID_BAND = 8192
#: A price range is narrowed by at most this many price bands: of the finest size that covers it in
#: so few (each band more is a posting list read by every index search).
MAX_PRICE_BANDS = 8


def city_term(city_key: str) -> str:
    return term(f" city:{city_key}") if len(city_key.encode()) > LONG_TERM else f" city:{city_key}"


def price_terms(price_minor: int) -> list[str]:
    """The bands a price is in, at three sizes: its decimal magnitude with two leading digits, with
    one, and alone (``1,234,500`` is in ``7:12``, ``7:1`` and ``7``): 1-10%, 10-100% and all of the
    prices of its magnitude."""
    digits = str(max(price_minor, 0))
    return [f" price:{len(digits)}:{digits[:2]}", f" price:{len(digits)}:{digits[:1]}", f" price:{len(digits)}"]


def price_bands(low: int | None, high: int | None) -> list[str] | None:
    """The bands of one size that cover a price range, the finest size needing at most
    ``MAX_PRICE_BANDS``; ``None`` when none does (the range is most prices), ``[]`` when it is empty."""
    low, high = max(low or 0, 0), min(high if high is not None else 10**18, 10**18)
    if low > high:
        return []
    for size in range(3):  # two leading digits, one, none
        bands: list[str] = []
        value = low
        while value <= high and len(bands) <= MAX_PRICE_BANDS:
            bands.append(price_terms(value)[size])
            digits = len(str(value))
            step = 10 ** (max(digits - 2, 0), max(digits - 1, 0), digits)[size]
            value = (value // step + 1) * step if size < 2 else 10**digits  # the first price of the next band
        if len(bands) <= MAX_PRICE_BANDS:
            return bands
    return None


def postgres_arrays(doc: str, city_key: str, price_minor: int) -> dict[str, list[str]]:
    """PostgreSQL's ``short_terms`` and ``words`` of a row, each with the row's city and price band
    (its id band is added by the database, which assigns the id)."""
    listing = [city_term(city_key), *price_terms(price_minor)]
    return {"short_terms": short_terms(doc) + listing, "words": word_terms(doc) + listing}


def sqlite_terms(doc: str, city_key: str, price_minor: int, longest_run: int = LONGEST_RUN) -> dict[str, str]:
    """The terms SQLite's contentless FTS5 tables hold for a row (``listings_short``, ``listings_words``),
    each with the row's city and price band: FTS5 meets a query's text and filters itself, newest
    first (its rowid order), reading no row that fails either. (A contentless table forgets a row only
    when given its exact terms again: ``longest_run`` gives schema 5's, for migration 6.)"""
    listing = fts_terms([city_term(city_key), *price_terms(price_minor)])
    return {
        "listings_short": " ".join([*short_terms(doc), listing]),
        "listings_words": " ".join([fts_terms(word_terms(doc, longest_run)), listing]),
    }


def has_long_run(doc: str) -> bool:
    """Whether a document repeats a word 4 or more times in a row (its terms changed in schema 6)."""
    return any(length > 3 for field in doc.split(FIELD_SEPARATOR) for _, length in runs(field.split(" ")))


def id_band(listing_id: int) -> str:
    """The id band term PostgreSQL's trigger ``listings_id_band`` adds to a row's arrays."""
    return f" id:{listing_id // ID_BAND}"


def fts_terms(terms: Sequence[str]) -> str:
    """Word-index terms as FTS5 tokens of the ``ascii`` tokenizer (``w`` + hex of the UTF-8 bytes)."""
    return " ".join(fts_term(t) for t in terms)


def fts_term(text: str) -> str:
    return "w" + text.encode().hex()


def fts_requirements(groups: Sequence[Sequence[str]]) -> str:
    """An FTS5 query over ``fts_terms`` holding every group (``WordQuery.narrowing``): any term of each."""
    return " AND ".join("(" + " OR ".join(fts_term(t) for t in group) + ")" for group in groups)


def prefix_range(prefix: str) -> tuple[str, str | None]:
    """``(low, high)``: in code point order (SQLite's ``BINARY``, PostgreSQL's ``"C"``), the strings
    starting with ``prefix`` are those ``>= low`` and ``< high`` (``high`` is ``None`` when nothing
    follows the prefix's last character)."""
    last = ord(prefix[-1]) + 1
    if last == 0xD800:  # surrogates are not characters of any stored text
        last = 0xE000
    return prefix, (prefix[:-1] + chr(last) if last <= 0x10FFFF else None)


class WordQuery:
    """What a folded query of 3 or more characters asks of the word index.

    A query that is a substring of a field is, split at its spaces, ``first`` (the end of a word), whole
    words in between (``middle``), and ``last`` (the start of a word); a query without a space lies
    inside one word. So the listings that can match hold, as adjacent words: a word ending with
    ``first`` then the first middle word; each middle word and the next; the last middle word then a
    word starting with ``last`` (or, with no middle word, a word ending with ``first`` then a word
    starting with ``last``); or, for one part, a word containing it. The store looks those words up in
    the vocabulary (``search_words``) and ``narrowing`` turns them into index terms."""

    def __init__(self, folded: str) -> None:
        self.parts = folded.split(" ")

    @property
    def infix(self) -> str | None:
        """The query when it has no space: the vocabulary words containing it are the candidates."""
        return self.parts[0] if len(self.parts) == 1 else None

    @property
    def first(self) -> str:
        """The vocabulary words ending with this precede the rest."""
        return self.parts[0]

    @property
    def last(self) -> str:
        """The vocabulary words starting with this follow the rest."""
        return self.parts[-1]

    def narrowing(self, before: Sequence[str] | None, after: Sequence[str] | None = None) -> list[list[str]] | None:
        """The terms a listing must hold to be a candidate: each inner list is one requirement, met by
        holding any of its terms (at most ``MAX_REQUIREMENTS`` of them). ``before`` are the words
        ending with ``first`` (or containing the query, for one part), ``after`` those starting with
        ``last``; ``None`` for more than ``MAX_WORDS``. Returns ``[]`` when no requirement can be
        stated (the caller uses the substring index alone) and ``None`` when no listing can match (a
        word the query needs is in no listing)."""
        groups: list[list[str]] = []
        if self.infix is not None:
            if before is not None:
                groups.append([term(word) for word in before])
        elif len(self.parts) == 2:
            if before is not None and after is not None and len(before) * len(after) <= MAX_WORDS:
                groups.append([term(f"{left} {right}") for left in before for right in after])
            else:
                groups += [[term(word) for word in side] for side in (before, after) if side is not None]
        else:
            middle = self.parts[1:-1]
            head, tail = middle[0], middle[-1]
            groups.append([term(f"{left} {head}") for left in before] if before is not None else [term(head)])
            groups += [[term(f"{left} {right}")] for left, right in itertools.pairwise(middle)]
            groups += [[term(" ".join([word] * min(length, LONGEST_RUN)))] for word, length in runs(middle)]
            groups.append([term(f"{tail} {right}") for right in after] if after is not None else [term(tail)])
        if any(not group for group in groups):
            return None
        unique: list[list[str]] = []
        for group in groups:
            if sorted(group) not in unique:
                unique.append(sorted(group))
        return sorted(unique, key=len)[:MAX_REQUIREMENTS]
