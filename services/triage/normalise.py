"""Normalisation of operators' notes into match keys, keeping the way back to the words typed.

Notes arrive in Iraqi Arabic, Modern Standard Arabic, English, Arabizi (Arabic in Latin letters and
digits) or a mix of them, typed in a hurry. Lexicon entries go through exactly the same functions, so a
rule here only has to be consistent, not linguistically perfect: a key is for matching, never for display.
Evidence is always cut from the original text by the character offsets each token keeps.

Arabic script (rules as in the usual Arabic search normalisers, e.g. Lucene's ArabicNormalizer, plus the
Iraqi letters):
- diacritics, Quranic marks and tatweel are removed;
- alef forms (أ إ آ ٱ) become ا, ؤ becomes و, ئ becomes ي, ة becomes ه, ى becomes ي;
- the Persian letters of Iraqi writing fold into the Arabic letters Iraqis also use for the same sounds:
  چ becomes ج (Iraqis write باجر as often as باچر), گ and ڨ become ك, ڤ becomes ف, پ becomes ب, ژ becomes ز;
- ق also becomes ك: Iraqi writers spell the spoken /g/ of ق as ك or گ (يكتلوني for يقتلوني), so the key
  folds all three;
- elongation is collapsed: a letter typed three times or more counts once, and a doubled long vowel
  (ا و ي) counts once (انتحااار, موووت);
- the accusative ending اً is dropped (حداً, صوراً), and so is the silent alef of plural verbs (نشروا, which
  Iraqis also write نشرو);
- Arabic-Indic and Persian digits become ASCII digits.

Latin script: lower case, apostrophes dropped and every run of a repeated letter counted once ("pleeease"
and "please" share the key "plese", "killll" and "kill" share "kil").

Arabizi: each Latin token also gets a consonant skeleton (see arabizi_skeleton) against which the Arabizi
lexicon entries, skeletonised the same way, are matched. Transliterating Arabizi into Arabic script would
have to guess vowels and letters; folding both sides onto a skeleton does not.
"""
import functools
import re
import unicodedata
from dataclasses import dataclass

_ARABIC_CHARS = (
    "\u0610-\u061A\u0620-\u065F\u066E-\u06D3\u06D5-\u06EF\u06FA-\u06FF"
    "\u0750-\u077F\u08A0-\u08FF\uFB50-\uFDFF\uFE70-\uFEFC"
)
_DIGIT_CHARS = "0-9\u0660-\u0669\u06F0-\u06F9"
_LATIN_CHARS = "A-Za-z\u00C0-\u024F"
_APOSTROPHES = "'\u2019`"

_TOKEN = re.compile(
    f"[{_ARABIC_CHARS}]+"
    f"|[{_LATIN_CHARS}{_DIGIT_CHARS}]+(?:[{_APOSTROPHES}][{_LATIN_CHARS}{_DIGIT_CHARS}]*)*"
)
# Punctuation that ends a clause: patterns do not match across it, and context words (negation, "last year",
# "in the news") do not reach across it. A colon does not end one: notes write "العمر: 15", "age: 15".
_CLAUSE_BREAK = re.compile("[.!?\u061F,\u060C;\u061B\n\u2026()\\[\\]\u06D4]")
# Brackets around a number do not end a clause: notes write "عمرها (15)", "المتصلة (١٥ سنة)".
_BRACKETS_ONLY = re.compile(r"[\s()\[\]]*")
_PRESENTATION_FORMS = re.compile("[\uFB50-\uFDFF\uFE70-\uFEFC]")
_ARABIC_LETTER = re.compile(f"[{_ARABIC_CHARS}]")

_REMOVED = dict.fromkeys(
    [*range(0x0610, 0x061B), *range(0x064B, 0x0660), 0x0670, *range(0x06D6, 0x06EE), 0x0640], None
)
_FOLDED = {
    "أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ٲ": "ا", "ٳ": "ا",
    "ؤ": "و", "ئ": "ي", "ة": "ه", "ى": "ي", "ی": "ي", "ې": "ي", "ە": "ه", "ھ": "ه", "ۀ": "ه",
    "چ": "ج", "گ": "ك", "ڨ": "ك", "ک": "ك", "ق": "ك", "ڤ": "ف", "پ": "ب", "ژ": "ز",
}
_DIGITS = {chr(0x0660 + d): str(d) for d in range(10)} | {chr(0x06F0 + d): str(d) for d in range(10)}
_ARABIC_TABLE = str.maketrans(_REMOVED | {ord(k): v for k, v in (_FOLDED | _DIGITS).items()})
_TANWEEN_ALEF = ("\u0627\u064B", "\u064B\u0627")
_ARABIC_ELONGATION = re.compile(r"(.)\1{2,}|([اوي])\2")

_LATIN_TABLE = str.maketrans({ord(k): v for k, v in _DIGITS.items()} | dict.fromkeys(map(ord, _APOSTROPHES), None))
_LATIN_RUNS = re.compile(r"([^\W\d_])\1+")

# Arabizi: multi-letter spellings first, then single characters. The digits stand for the Arabic letters
# they look like: 2 hamza (or a glottal ق), 3 ع, 5 and 7' خ, 7 ح, 6 ط, 8 ق/غ, 9 ص. ق, ك, گ and غ all fold to
# k, as they do in the Arabic key; 2 and 3 stay distinct letters because writers also drop them.
_ARABIZI_DIGRAPHS = (
    ("7'", "x"), ("5", "x"), ("kh", "x"), ("3'", "k"), ("gh", "k"), ("9'", "d"), ("6'", "z"),
    ("sh", "s"), ("ch", "j"), ("th", "t"), ("dh", "d"), ("ph", "f"),
)
_ARABIZI_PREPARED = str.maketrans({ord(k): v for k, v in _DIGITS.items()} | {ord("\u2019"): "'", ord("`"): "'"})
_ARABIZI_LETTERS = str.maketrans({
    "q": "k", "g": "k", "8": "k", "c": "k", "9": "s", "6": "t", "7": "h", "v": "f", "p": "b", "'": None,
})
_VOWELS = re.compile("[aeiou]+")
_RUNS = re.compile(r"(.)\1+")


@functools.lru_cache(maxsize=65536)
def normalise_arabic(word: str) -> str:
    """The match key of a word in Arabic script."""
    if _PRESENTATION_FORMS.search(word):
        word = unicodedata.normalize("NFKC", word)
    if word.endswith(_TANWEEN_ALEF):
        word = word[:-2]
    word = word.translate(_ARABIC_TABLE)
    word = _ARABIC_ELONGATION.sub(lambda m: m.group(1) or m.group(2), word)
    return word[:-1] if len(word) > 3 and word.endswith("وا") else word


@functools.lru_cache(maxsize=65536)
def normalise_latin(word: str) -> str:
    """The match key of a word in Latin letters (English, or Arabizi read as written)."""
    word = word.translate(_LATIN_TABLE).lower()
    return _LATIN_RUNS.sub(r"\1", word)


@functools.lru_cache(maxsize=65536)
def arabizi_skeleton(word: str) -> str:
    """A consonant skeleton of a Latin-script word, so that spelling variants of Arabizi meet.

    "ra7", "rah" -> "rh"; "a2tel" -> "a2tl"; "aktil", "agtel", "aqtel" -> "aktl"; "nafsi", "nafsy" -> "nfs";
    "yektlooni" -> "yktln"; "5alas", "khalas" -> "xls". A word-initial vowel is kept as "a" (it is often
    the first-person prefix أ), later vowels and a final "y" are dropped.
    """
    word = word.translate(_ARABIZI_PREPARED).lower()
    if word.isdigit():
        return word
    for spelling, letter in _ARABIZI_DIGRAPHS:
        if spelling in word:
            word = word.replace(spelling, letter)
    word = word.translate(_ARABIZI_LETTERS)
    initial_vowel = word[:1] in "aeiou"
    word = _VOWELS.sub("", word)
    if len(word) > 1 and word.endswith("y"):
        word = word[:-1]
    if initial_vowel:
        word = "a" + word
    return _RUNS.sub(r"\1", word)


def clear_caches() -> None:
    """Forget cached word keys (they are pure functions of the word; the benchmark measures without them)."""
    for function in (normalise_arabic, normalise_latin, arabizi_skeleton):
        function.cache_clear()


def normalise_word(word: str) -> str:
    """The match key of one word, whichever script it is in."""
    return normalise_arabic(word) if _ARABIC_LETTER.match(word) else normalise_latin(word)


def normalise_text(text: str) -> str:
    """The match keys of all words of a text, space separated (for lexicon entries and tests)."""
    return " ".join(key for key in (normalise_word(m.group()) for m in _TOKEN.finditer(text)) if key)


@dataclass(frozen=True)
class Note:
    """A tokenised note: for token i, keys[i] and skeletons[i] are its match keys, spans[i] its place in text.

    clauses[i] numbers the clause the token is in; punctuation starts a new clause.
    """
    text: str
    keys: tuple[str, ...]
    skeletons: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]
    clauses: tuple[int, ...]
    is_latin: tuple[bool, ...]

    def quote(self, first: int, last: int) -> str:
        """The original words of tokens first..last inclusive, exactly as typed."""
        return self.text[self.spans[first][0]:self.spans[last][1]]


def tokenise(text: str) -> Note:
    """Split a note into tokens with their match keys, original spans and clause numbers."""
    keys, skeletons, spans, clauses, latin = [], [], [], [], []
    clause, previous_end, previous_word = 0, 0, ""
    for match in _TOKEN.finditer(text):
        start, end = match.span()
        word = match.group()
        arabic_key = normalise_arabic(word) if _ARABIC_LETTER.match(word) else None
        if arabic_key == "":
            continue  # only marks or tatweel (a tatweel typed as a dash): no word to match
        if keys and _CLAUSE_BREAK.search(text, previous_end, start) and not (
            (word[0].isdigit() or previous_word[:1].isdigit()) and _BRACKETS_ONLY.fullmatch(text, previous_end, start)
        ):
            clause += 1
        if arabic_key is not None:
            key = arabic_key
            keys.append(key)
            skeletons.append(key)
            latin.append(False)
        else:
            keys.append(normalise_latin(word))
            skeletons.append(arabizi_skeleton(word))
            latin.append(not word.isdigit())
        spans.append((start, end))
        clauses.append(clause)
        previous_end, previous_word = end, word
    return Note(text, tuple(keys), tuple(skeletons), tuple(spans), tuple(clauses), tuple(latin))
