"""Property-based tests of triage's normaliser (Hypothesis): an operator can type anything into a note, in
any script, in a hurry, and triage must still score it. So the normaliser never raises, its match keys are
fixed points (a key normalised again is the same key, which is what lets lexicon entries and notes meet),
and every token points back at exactly the words typed.
"""
from hypothesis import given, settings
from hypothesis import strategies as st

from services.triage.normalise import (
    arabizi_skeleton, normalise_arabic, normalise_latin, normalise_text, normalise_word, tokenise,
)

EXAMPLES = settings(max_examples=300, deadline=None)

# Weighted toward what notes are made of: Arabic letters and marks (the Iraqi letters, tatweel, harakat,
# presentation forms), Arabizi digits, Latin, apostrophes, punctuation and whitespace; then anything at all.
ARABIC = "ابتثجحخدذرسشصضطظعغفقكلمنهويءآأإؤئىةچگڤپژکیۀھٱ" "\u064b\u064c\u064d\u064e\u064f\u0650\u0651\u0652\u0640"
NOTE_ALPHABET = ARABIC + "ﻻﷲﺍﺑ" + "٠١٢٣٤٥٦٧٨٩۰۱۲" + "abcdeghiklmnoqrstuwyzKHSA" + "0235679" + "'’`" + ".,!?؟،؛:…()\n \t-"
typed_notes = st.text(alphabet=st.sampled_from(NOTE_ALPHABET), max_size=80)
notes = typed_notes | st.text(max_size=80)
words = st.text(alphabet=st.sampled_from(NOTE_ALPHABET), min_size=1, max_size=15) | st.text(min_size=1, max_size=15)


@EXAMPLES
@given(text=notes)
def test_tokenise_takes_any_text_and_every_token_quotes_the_words_typed(text):
    note = tokenise(text)
    assert len(note.keys) == len(note.skeletons) == len(note.spans) == len(note.clauses) == len(note.is_latin)
    previous_end = 0
    for index, (start, end) in enumerate(note.spans):
        assert previous_end <= start < end <= len(text)
        assert note.quote(index, index) == text[start:end]
        previous_end = end
    assert list(note.clauses) == sorted(note.clauses)


@EXAMPLES
@given(word=words)
def test_no_word_makes_a_normaliser_raise(word):
    for normalise in (normalise_arabic, normalise_latin, arabizi_skeleton, normalise_word):
        assert isinstance(normalise(word), str)


# Keys are fixed points for the scripts notes and lexicons are written in. Outside them Unicode's case
# mapping can leave the Latin block ("Ⱦ".lower() is U+2C66), so a second pass may drop a letter no lexicon has.
@EXAMPLES
@given(text=typed_notes)
def test_normalised_text_is_a_fixed_point(text):
    once = normalise_text(text)
    assert normalise_text(once) == once


@EXAMPLES
@given(text=typed_notes)
def test_the_key_of_every_token_is_a_fixed_point_and_never_empty(text):
    for key in tokenise(text).keys:
        assert key and normalise_word(key) == key


def test_a_tatweel_typed_as_a_dash_does_not_come_between_two_words():
    note = tokenise("بدها تنتحر ـ الليلة")
    assert note.keys == tokenise("بدها تنتحر الليلة").keys
    assert normalise_text("0ً") == "0"
