"""The normaliser: one test per rule, and the way back from tokens to the words typed."""
import pytest

from services.triage.normalise import (
    arabizi_skeleton,
    normalise_arabic,
    normalise_latin,
    normalise_text,
    tokenise,
)


def test_diacritics_and_tatweel_are_removed():
    assert normalise_arabic("أُرِيدُ") == "اريد"
    assert normalise_arabic("انتـــحار") == "انتحار"


def test_letter_elongation_collapses_to_one_letter():
    assert normalise_arabic("انتحااار") == "انتحار"
    assert normalise_arabic("موووت") == "موت"
    assert normalise_arabic("كلللش") == "كلش"


def test_a_doubled_long_vowel_counts_once_but_a_real_double_consonant_stays():
    assert normalise_arabic("انتحاار") == "انتحار"
    assert normalise_arabic("ممكن") == "ممكن"


@pytest.mark.parametrize("written, key", [("أهلي", "اهلي"), ("إنتحار", "انتحار"), ("آخر", "اخر"), ("ٱلموت", "الموت")])
def test_alef_forms_become_bare_alef(written, key):
    assert normalise_arabic(written) == key


def test_hamza_on_waw_and_ya_become_the_letters():
    assert normalise_arabic("مسؤول") == normalise_arabic("مسوول")
    assert normalise_arabic("بيئة") == normalise_arabic("بييه")


def test_ta_marbuta_becomes_ha_and_alef_maqsura_becomes_ya():
    assert normalise_arabic("الليلة") == normalise_arabic("الليله")
    assert normalise_arabic("مستشفى") == "مستشفي"


def test_iraqi_persian_letters_fold_into_the_letters_iraqis_also_write():
    assert normalise_arabic("باچر") == normalise_arabic("باجر")
    assert normalise_arabic("گال") == normalise_arabic("قال") == normalise_arabic("كال")
    assert normalise_arabic("ڤيديو") == "فيديو"


def test_qaf_and_kaf_share_a_key_so_both_iraqi_spellings_match():
    assert normalise_arabic("يقتلوني") == normalise_arabic("يكتلوني")
    assert normalise_arabic("احرق") == normalise_arabic("احرك")


def test_arabic_indic_and_persian_digits_become_ascii():
    assert normalise_text("عمرها ١٥") == normalise_text("عمرها 15")
    assert normalise_text("عمرها ١٥").endswith(" 15")
    assert normalise_text("۱۶ سنة") == "16 سنه"


def test_accusative_ending_and_silent_plural_alef_are_dropped():
    assert normalise_arabic("حداً") == "حد"
    assert normalise_arabic("صوراً") == normalise_arabic("صور")
    assert normalise_arabic("نشروا") == normalise_arabic("نشرو")
    assert normalise_arabic("ما") == "ما"


def test_presentation_forms_are_decomposed():
    assert normalise_arabic("\uFEFB") == "لا"


def test_latin_words_are_lower_cased_and_repeated_letters_count_once():
    assert normalise_latin("Pleeease") == normalise_latin("please")
    assert normalise_latin("KILLLL") == normalise_latin("kill")
    assert normalise_latin("don't") == "dont"


def test_numbers_keep_their_repeated_digits():
    assert normalise_latin("1000") == "1000"


@pytest.mark.parametrize("spellings", [
    ("ra7", "rah"),
    ("aktil", "agtel", "aqtel", "a8tel"),
    ("nafsi", "nafsy"),
    ("yektlooni", "ykitlooni", "yiktluni"),
    ("5alas", "khalas", "7'alas"),
    ("amoot", "amut", "amooot"),
])
def test_arabizi_spelling_variants_share_a_skeleton(spellings):
    assert len({arabizi_skeleton(word) for word in spellings}) == 1


def test_arabizi_digits_keep_hamza_and_ain_distinct():
    assert arabizi_skeleton("a2tel") != arabizi_skeleton("a3tel")
    assert arabizi_skeleton("3omri") == "3mr"


def test_tokens_keep_their_place_in_the_original_text():
    text = "تكول: راح أنتحِر الليلة!! ra7 a2tel nafsi"
    note = tokenise(text)
    assert note.keys[1:4] == ("راح", "انتحر", normalise_arabic("الليلة"))
    assert note.quote(1, 2) == "راح أنتحِر"
    assert note.quote(4, 6) == "ra7 a2tel nafsi"


def test_arabic_letters_and_digits_written_together_are_two_tokens():
    assert tokenise("عمرها15").keys == (normalise_arabic("عمرها"), "15")


def test_punctuation_starts_a_new_clause_but_a_colon_does_not():
    note = tokenise("العمر: 15، تهدد. بعدين")
    assert note.clauses == (0, 0, 1, 2)


def test_arabizi_tokens_are_marked_latin_and_numbers_are_not():
    note = tokenise("ra7 15 انتحر")
    assert note.is_latin == (True, False, False)
