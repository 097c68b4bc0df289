"""The assessment: matching in every language form, context, the checklist, levels, scores and evidence."""
import shutil

import pytest

from services.triage.assessment import (
    DEFAULT_LEXICON_DIRECTORY,
    LEVELS,
    Assessment,
    Assessor,
    CaseFacts,
    InvalidCaseFacts,
    LexiconError,
    Reason,
    assess,
    case_facts_from_mapping,
    default_assessor,
)


def level_of(narrative: str, **checklist) -> str:
    return assess(CaseFacts(narrative=narrative, **checklist)).level


def codes_of(narrative: str, **checklist) -> set[str]:
    return {reason.code for reason in assess(CaseFacts(narrative=narrative, **checklist)).reasons}


def reason(assessment: Assessment, code: str) -> Reason:
    return next(r for r in assessment.reasons if r.code == code)


# -- idioms -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("idiom", [
    "رح اموت من الضحك",
    "قتلني الملل",
    "اموت عليك",
    "political suicide",
    "the phone died",
    "rumours would kill her reputation",
    "this heat is killing me",
    "I'm dying to know",
    "amoot mn el d7k",
    "التلفون مات",
])
def test_idioms_of_death_and_killing_are_no_risk(idiom):
    assert level_of(idiom) == "low"


def test_an_idiom_masks_only_its_own_words():
    assert level_of("رح اموت من الضحك بس هي تكول اريد انتحر") == "critical"


# -- suicide, in every language form ------------------------------------------------------------------------

@pytest.mark.parametrize("note", [
    "راح اموت نفسي",
    "اريد اخلص من حياتي",
    "تريد تنتحر الليلة",
    "قررت الانتحار",
    "She says she will kill herself tonight",
    "ra7 a2tel nafsi",
    "عمرها 16 and she says رح انتحر if he posts",
])
def test_suicidal_intent_is_critical_in_every_language_form(note):
    assert level_of(note) == "critical"


@pytest.mark.parametrize("note", [
    "ماكو داعي اعيش",
    "تتمنى تموت",
    "she wishes she was dead",
    "abi amoot",
    "mareed a3eesh",
])
def test_suicidal_thoughts_without_plan_are_high(note):
    assert level_of(note) == "high"
    assert "suicidal_thoughts" in codes_of(note)


@pytest.mark.parametrize("note", ["اشرب سم", "اذبح نفسي", "اطب بالشط", "احرك نفسي", "احرق نفسي", "jump off the bridge"])
def test_methods_are_critical(note):
    assert level_of(note) == "critical"


def test_clitics_on_arabic_words_are_matched():
    assert level_of("وانتحرت") != "low"
    assert "honour_threat" in codes_of("اهلي راح يكتلوني")
    assert "honour_threat" in codes_of("اهلي راح يقتلوني")
    assert "deadline_24h" in codes_of("يهددها، عطاها مهلة لباجر")


def test_a_word_is_not_matched_inside_a_longer_word():
    assert level_of("بسم الله، تسأل عن حماية الحساب") == "low"


# -- negation and context -----------------------------------------------------------------------------------

@pytest.mark.parametrize("note", ["ما افكر انتحر", "ما راح انتحر", "I'm not going to kill myself", "ma afakir ant7ar"])
def test_a_negated_suicide_mention_is_still_suicidal_thoughts(note):
    assessment = assess(CaseFacts(narrative=note))
    assert assessment.level == "high"
    assert reason(assessment, "suicidal_thoughts").source == "text"


def test_a_denial_while_talking_of_death_is_high():
    assert level_of("تكول ما راح اموت نفسي، بس الموت ارحم") == "high"


def test_an_oath_is_not_a_negation():
    assert level_of("والله لا اموت نفسي اذا درى ابوي") == "critical"


def test_after_ma_is_not_a_negation():
    assert "published" in codes_of("ما عدها رغبة تعيش من بعد ما انتشرت الصور")


def test_a_negated_or_conditional_publication_is_not_a_publication():
    assert "published" not in codes_of("ما نشر لحد هسه بس يهدد")
    assert "published" not in codes_of("اذا نشر الصور راح تروح للشرطة")
    assert "published" in codes_of("نشر الصور بالفيس")


def test_a_third_party_death_in_the_past_is_low_and_says_why():
    assessment = assess(CaseFacts(narrative="my friend's cousin killed herself last year"))
    assert assessment.level == "low"
    assert reason(assessment, "third_party_mention").evidence == ("killed herself",)


def test_a_news_item_is_low():
    assert level_of("شافت خبر بالتلفزيون عن بنت انتحرت بسبب الابتزاز") == "low"


def test_a_resolved_past_case_is_low():
    assert level_of("انبتزت قبل سنتين والموضوع انحل") == "low"


def test_an_attempt_in_the_past_is_an_earlier_attempt_but_a_present_one_is_critical():
    assert codes_of("حاولت تنتحر قبل سنتين") == {"prior_attempt"}
    assert level_of("حاولت تنتحر قبل سنتين") == "high"
    assert level_of("شربت علبة حبوب قبل ساعة") == "critical"


def test_present_risk_after_a_past_clause_is_not_made_past():
    assert level_of("حاولت تنتحر قبل سنتين، بس هسه تريد تنتحر") == "critical"


def test_a_resolved_ending_told_in_the_next_clause_covers_the_threat_before_it():
    assert level_of("واحد يهدده بس طلع كذب والموضوع انتهى") == "low"
    assert level_of("القضية الاولى انحلت، بس هسه رجع يهددها") == "medium"


def test_a_denial_of_thoughts_downgrades_the_act_to_thoughts_instead_of_reading_it_as_the_act():
    assert level_of("Denies thoughts of self-harm, being blackmailed") == "high"
    assert level_of("ما عندها افكار تأذي نفسها، بس يهددها") == "high"


def test_drinking_hair_dye_is_a_method():
    assert level_of("حاولت تشرب صبغ شعر البارحة") == "critical"
    assert level_of("She has hair dye and wants to drink it") == "critical"


def test_a_weapon_in_a_relative_s_hands_is_an_honour_threat():
    assert "honour_threat" in codes_of("ابوها طلع المسدس وكال اذا طلع الحجي صحيح")


def test_someone_calling_about_a_current_victim_is_not_discounted():
    assert level_of("صديقتي تريد تنتحر لان واحد يبتزها") == "critical"


# -- other concepts -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("note, code", [
    ("عمرها ١٥ ويهددها", "minor"),
    ("بالسادس اعدادي ويبتزها واحد", "minor"),
    ("Victim is a 16-year-old", "minor"),
    ("نزل الفيديو بالتلكرام", "published"),
    ("يريد الفلوس لباجر", "deadline_24h"),
    ("gave her until tonight to pay", "deadline_24h"),
    ("اخوها ضربها", "violence_threat"),
    ("يريدون يزوجوها ابن عمها غصبا عنها", "forced_marriage"),
    ("ما تاكل ولا تنام", "severe_distress"),
    ("ابوها حابسها بالغرفة", "abduction"),
    ("سامحوني كلكم", "farewell"),
    ("غسل العار", "honour_threat"),
    ("يبتزها بصورها", "extortion"),
])
def test_each_concept_is_recognised(note, code):
    assert code in codes_of(note)


def test_an_adult_age_is_not_a_minor():
    assert "minor" not in codes_of("عمرها 22 وعندها 3 اطفال، يهددها")


def test_a_deadline_beyond_a_day_is_not_within_24_hours():
    assert "deadline_24h" not in codes_of("مهلة اسبوع حتى تدفع")
    assert "deadline_24h" in codes_of("عطاها مهلة خلال 5 ساعات")
    assert "deadline_24h" not in codes_of("عطاها مهلة خلال 48 ساعة")


def test_tomorrow_counts_as_a_deadline_only_near_a_threat():
    assert "deadline_24h" not in codes_of("راح تتصل باجر تسأل عن المحامي")
    assert "deadline_24h" in codes_of("يهددها ينشر الصور باجر")


# -- checklist and the level rules --------------------------------------------------------------------------

def test_a_ticked_checkbox_raises_the_level_and_says_it_came_from_the_checklist():
    assessment = assess(CaseFacts(narrative="تسأل عن حماية الحساب", suicidal_thoughts=True))
    assert assessment.level == "high"
    assert reason(assessment, "suicidal_thoughts") == Reason(
        "suicidal_thoughts", ("suicidal_thoughts=true",), "checklist")


def test_the_checklist_never_lowers_what_the_text_found():
    facts = CaseFacts(narrative="راح انتحر الليلة", suicidal_thoughts=False, threat_of_violence=False,
                      material_published=False, victim_age=30, deadline_hours=200)
    assert assess(facts).level == "critical"


def test_the_text_raises_a_level_the_checklist_left_low():
    assert level_of("عمرها ١٧ ويهددها", victim_age=20) == "high"


@pytest.mark.parametrize("stressor", [
    {"victim_age": 15}, {"deadline_hours": 20}, {"material_published": True}, {"threat_of_violence": True},
])
def test_suicidal_thoughts_with_an_acute_stressor_are_critical(stressor):
    assessment = assess(CaseFacts(narrative="", suicidal_thoughts=True, **stressor))
    assert assessment.level == "critical"
    assert "ideation_with_stressor" in {r.code for r in assessment.reasons}


def test_suicidal_thoughts_in_the_text_with_a_stressor_in_the_text_are_critical():
    assert level_of("ماكو داعي اعيش، نشر صوري بالفيس") == "critical"


def test_checklist_facts_alone_give_their_levels():
    assert assess(CaseFacts(victim_age=17)).level == "high"
    assert assess(CaseFacts(deadline_hours=24)).level == "high"
    assert assess(CaseFacts(deadline_hours=72)).level == "medium"
    assert assess(CaseFacts()).level == "low"


def test_extortion_alone_is_medium_and_a_general_question_is_low():
    assert level_of("واحد يبتزها ويطلب 300 الف") == "medium"
    assert level_of("تسأل عن الابتزاز الالكتروني") == "low"


def test_scores_are_monotone_with_levels():
    notes = ["", "تسأل عن الابتزاز", "يبتزها", "يبتزها، عمرها 15", "عمرها 15، نشر صورها، ما تاكل",
             "راح انتحر", "راح انتحر، جمعت حبوب، اهلي يذبحوني، كتبت وصيتي"]
    assessments = [assess(CaseFacts(narrative=n)) for n in notes]
    ordered = sorted(assessments, key=lambda a: (LEVELS.index(a.level), a.score))
    for lower, higher in zip(ordered, ordered[1:]):
        if LEVELS.index(lower.level) < LEVELS.index(higher.level):
            assert lower.score < higher.score
    for a in assessments:
        assert 0 <= a.score <= 100


# -- evidence -----------------------------------------------------------------------------------------------

def test_evidence_quotes_the_original_words_with_their_spelling_and_diacritics():
    assessment = assess(CaseFacts(narrative="تكول: رااااح أنتحِر الليلة!!"))
    assert reason(assessment, "suicidal_intent").evidence == ("رااااح أنتحِر الليلة",)


def test_separate_mentions_of_one_code_are_quoted_separately():
    assessment = assess(CaseFacts(narrative="يبتزها بالصور. بعدين صار يهددها"))
    assert reason(assessment, "extortion").evidence == ("يبتزها", "يهددها")


def test_evidence_of_a_negated_mention_includes_the_negation():
    assessment = assess(CaseFacts(narrative="تكول ما افكر انتحر"))
    assert reason(assessment, "suicidal_thoughts").evidence == ("ما افكر انتحر",)


def test_evidence_of_arabizi_is_the_latin_text_as_typed():
    assessment = assess(CaseFacts(narrative="Ra7 A2tel Nafsi!!"))
    assert reason(assessment, "suicidal_intent").evidence == ("Ra7 A2tel Nafsi",)


def test_to_dict_is_json_ready():
    assessment = assess(CaseFacts(narrative="يبتزها", victim_age=15))
    data = assessment.to_dict()
    assert data["level"] == "high"
    assert data["lexicon_version"] == default_assessor().lexicon_version
    assert {"code": "minor", "evidence": ["victim_age=15"], "source": "checklist"} in data["reasons"]


# -- reading case facts -------------------------------------------------------------------------------------

def test_case_facts_treat_absent_and_null_fields_as_unknown():
    assert case_facts_from_mapping({"id": 1}) == CaseFacts()
    assert case_facts_from_mapping({"narrative": None, "victim_age": 15.0}) == CaseFacts(victim_age=15)


@pytest.mark.parametrize("data, field", [
    ({"victim_age": "15"}, "victim_age"),
    ({"victim_age": True}, "victim_age"),
    ({"victim_age": 15.5}, "victim_age"),
    ({"deadline_hours": "soon"}, "deadline_hours"),
    ({"deadline_hours": -3}, "deadline_hours"),
    ({"material_published": "yes"}, "material_published"),
    ({"narrative": 7}, "narrative"),
])
def test_case_facts_name_the_field_they_cannot_read(data, field):
    with pytest.raises(InvalidCaseFacts) as raised:
        case_facts_from_mapping(data)
    assert raised.value.field == field


# -- the lexicon --------------------------------------------------------------------------------------------

@pytest.fixture
def lexicon_copy(tmp_path):
    directory = tmp_path / "lexicons"
    shutil.copytree(DEFAULT_LEXICON_DIRECTORY, directory)
    return directory


def test_the_lexicon_version_is_the_index_version_and_a_content_hash(lexicon_copy):
    version = Assessor.from_directory(lexicon_copy).lexicon_version
    assert version == default_assessor().lexicon_version
    assert version.startswith("1.2.0+") and len(version.split("+")[1]) == 12


def test_the_lexicon_version_changes_when_any_listed_file_changes(lexicon_copy):
    before = Assessor.from_directory(lexicon_copy).lexicon_version
    farewell = lexicon_copy / "farewell.yaml"
    farewell.write_text(farewell.read_text(encoding="utf-8") + "\n# reviewed\n", encoding="utf-8")
    after = Assessor.from_directory(lexicon_copy)
    assert after.lexicon_version != before
    assert after.lexicon_version.split("+")[0] == before.split("+")[0]


def test_a_new_lexicon_entry_takes_effect_and_is_versioned(lexicon_copy):
    hopelessness = lexicon_copy / "hopelessness.yaml"
    text = hopelessness.read_text(encoding="utf-8").replace(
        '      - "hopeless/helpless/trapped"', '      - "hopeless/helpless/trapped"\n      - "checkmate"')
    hopelessness.write_text(text, encoding="utf-8")
    assessment = Assessor.from_directory(lexicon_copy).assess(CaseFacts(narrative="she said checkmate"))
    assert assessment.level == "high"
    assert assessment.lexicon_version != default_assessor().lexicon_version


def test_a_broken_lexicon_is_refused_with_the_file_named(lexicon_copy):
    (lexicon_copy / "farewell.yaml").write_text("concept: farewell\nlevel: urgent\n", encoding="utf-8")
    with pytest.raises(LexiconError, match="farewell.yaml"):
        Assessor.from_directory(lexicon_copy)


def test_a_key_given_twice_is_refused(lexicon_copy):
    context = lexicon_copy / "context.yaml"
    context.write_text(context.read_text(encoding="utf-8") + "\nnegation_window: 3\n", encoding="utf-8")
    with pytest.raises(LexiconError, match="context.yaml.*twice"):
        Assessor.from_directory(lexicon_copy)


def test_a_discount_without_markers_is_refused(lexicon_copy):
    plan = lexicon_copy / "suicide_plan.yaml"
    plan.write_text(plan.read_text(encoding="utf-8").replace("discounted_by: [", "discounted_by: [gossip, ", 1),
                    encoding="utf-8")
    with pytest.raises(LexiconError, match="gossip"):
        Assessor.from_directory(lexicon_copy)


def test_asking_about_doses_is_not_a_general_question():
    assert level_of("She asked how many pills are lethal") == "critical"
    assert level_of("تسأل شكد حبة لازم تشرب حتى تموت") == "critical"


def test_a_reference_to_an_unknown_set_is_refused(lexicon_copy):
    plan = lexicon_copy / "suicide_plan.yaml"
    plan.write_text(plan.read_text(encoding="utf-8").replace("@SELF_AR", "@SELVES_AR", 1), encoding="utf-8")
    with pytest.raises(LexiconError, match="SELVES_AR"):
        Assessor.from_directory(lexicon_copy)


def test_a_one_word_arabizi_entry_that_is_also_an_english_word_is_refused(lexicon_copy):
    farewell = lexicon_copy / "farewell.yaml"
    farewell.write_text(farewell.read_text(encoding="utf-8").replace(
        '"wasiyti/', '"wasiya/wasiyti/'), encoding="utf-8")
    with pytest.raises(LexiconError, match="wasiya"):
        Assessor.from_directory(lexicon_copy)


def test_every_lexicon_file_is_versioned_and_cites_its_sources():
    import yaml
    for path in sorted(DEFAULT_LEXICON_DIRECTORY.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert data.get("version"), path.name
        if path.name != "index.yaml":
            assert data.get("sources"), path.name


def test_the_default_assessor_is_built_once():
    assert default_assessor() is default_assessor()


# -- whose risk, and what a negation negates (review of the context rules) ---------------------------------

@pytest.mark.parametrize("note", [
    "تكول راح انتحر لان ابن عمي نشر صوري الشهر الماضي",
    "تريد تنتحر لان صديقتها سربت صورها قبل شهر",
    "She wants to kill herself because her cousin posted the photos last month",
    "ra7 antahir li2an sadeeqti nashrat 9owari gabl shahar",
    "صديقتها انتحرت قبل سنة وهي تريد تنتحر مثلها",
])
def test_someone_else_in_the_past_does_not_discount_the_callers_own_intent(note):
    assert level_of(note) == "critical"


def test_a_third_party_is_someone_else_only_near_the_mention():
    assert level_of("she wants to kill herself tonight and a friend of her sister told us about the photos") == "critical"
    assert level_of("my friend's cousin killed herself last year") == "low"


def test_the_callers_own_first_person_words_are_never_someone_elses():
    assert level_of("صحفية اتصلت تكول راح اموت نفسي") == "critical"
    assert level_of("a journalist called and said i'll kill myself") == "critical"
    assert level_of("صحفية اتصلت تكول بنت تنتحر") == "low"


@pytest.mark.parametrize("note", [
    "المعلمة اتصلت تكول الطالبة تريد تنتحر الليلة",
    "her teacher called and said the girl will kill herself tonight",
])
def test_a_teacher_reporting_a_student_is_not_a_general_question(note):
    assert level_of(note) == "critical"


def test_no_longer_is_not_a_resolved_case():
    assert level_of("she can no longer bear it and will die tonight") == "critical"
    assert level_of("the blackmailer no longer contacts her, it is over now") == "low"


@pytest.mark.parametrize("note", [
    "ابوها يضربها كل يوم، والمبتز بطل",
    "her father beats her every day, the blackmailer stopped contacting her",
])
def test_an_ended_blackmail_does_not_end_family_violence(note):
    assert level_of(note) == "high"
    assert "violence_threat" in codes_of(note)


def test_a_question_does_not_cover_the_reason_given_for_it():
    assert "deadline_24h" in codes_of("she wants to know what to do because he gave her until tomorrow")
    assert {"minor", "deadline_24h"} <= codes_of("المتصلة تريد تعرف شنو تسوي لان عمرها ١٥ والمبتز هددها ينشر باجر")


@pytest.mark.parametrize("note", [
    "تكول ماكو حل راح انتحر",
    "تكول ما اتحمل راح انتحر",
    "تكول لا والله راح انتحر",
    "mako 7al ra7 antahir",
    "ماكو حل اكتل نفسي",
])
def test_a_negation_of_something_else_before_intent_does_not_downgrade_it(note):
    assert level_of(note) == "critical"


def test_a_negation_reaches_the_intent_over_auxiliaries_only():
    assert level_of("ما راح انتحر") == "high"
    assert level_of("she is not going to kill herself") == "high"
    assert level_of("ما عندها نية تنتحر") == "high"


@pytest.mark.parametrize("note", [
    "تكول اريد اموت. المبتز قال اذا ما تدفعين الليلة انشر صورج",
    "تكول اريد اموت. المبتز قال اذا ما تدفعين لباجر انشر صورج",
    "she wants to die, he said if she doesn't pay tonight he will post the photos",
])
def test_a_negation_inside_a_condition_keeps_the_deadline(note):
    assert "deadline_24h" in codes_of(note)
    assert level_of(note) == "critical"


@pytest.mark.parametrize("note", [
    "she said she would kill herself if he posts them",
    "she'd kill herself",
    "she'd rather kill herself than let her family see",
    "i wanna kill myself",
    "she said she might kill herself",
    "she feels like killing herself",
    "if he posted them she'd kill herself",
    "she wants to kms",
    "she wants to unalive herself",
])
def test_english_modals_before_killing_oneself_are_intent(note):
    assert codes_of(note) == {"suicidal_intent"}


def test_plain_english_self_killing_words_are_at_least_suicidal_thoughts():
    assert codes_of("she keeps saying kill myself") == {"suicidal_thoughts"}
    assert codes_of("kms") == {"suicidal_thoughts"}
    assert level_of("she lives 30 kms from nasiriyah") == "low"


@pytest.mark.parametrize("note", ["she threatened to kill herself", "she says she'll kill her self"])
def test_threatening_to_kill_herself_is_her_intent_not_a_threat_against_her(note):
    assert codes_of(note) == {"suicidal_intent"}


def test_a_modal_before_killing_her_is_still_a_threat_to_kill():
    assert codes_of("he said he would kill her") == {"kill_threat"}


@pytest.mark.parametrize("note", ["my life is over, he posted my photos", "تكول حياتي انتهت، نشر صوري بالفيس"])
def test_hopelessness_with_an_acute_stressor_is_critical_like_suicidal_thoughts(note):
    assessment = assess(CaseFacts(narrative=note))
    assert assessment.level == "critical"
    assert {"hopelessness", "published", "ideation_with_stressor"} <= {r.code for r in assessment.reasons}


def test_hopelessness_alone_stays_high():
    assert level_of("my life is over") == "high"


# -- English words are not Arabizi -------------------------------------------------------------------------

@pytest.mark.parametrize("note, level", [
    ("he stole my cell phone", "medium"),
    ("she has suicidal thoughts and some anxiety", "high"),
    ("she said the same and will miss her friends", "low"),
])
def test_common_english_words_are_not_read_as_arabizi(note, level):
    assert level_of(note) == level
    assert not codes_of(note) & {"severe_distress", "means_at_hand"}


def test_arabizi_still_matches_in_a_note_with_english_words():
    assert level_of("she told me 3indi 7boob w ra7 a2tel nafsi") == "critical"


def test_no_listed_english_word_is_an_arabizi_lexicon_word():
    import re
    import yaml
    from services.triage.normalise import normalise_latin

    directory = DEFAULT_LEXICON_DIRECTORY
    context = yaml.safe_load((directory / "context.yaml").read_text(encoding="utf-8"))
    english = {normalise_latin(str(word)) for word in context["english_words"]}
    arabizi_patterns = []

    def collect(node, in_arabizi=False):
        if isinstance(node, dict):
            for key, value in node.items():
                collect(value, in_arabizi or key == "arabizi" or str(key).endswith("_AZ"))
        elif isinstance(node, list):
            for value in node:
                collect(value, in_arabizi)
        elif in_arabizi and isinstance(node, str):
            arabizi_patterns.append(node)

    for path in directory.glob("*.yaml"):
        collect(yaml.safe_load(path.read_text(encoding="utf-8")))
    words = {normalise_latin(word.strip("=+*")) for pattern in arabizi_patterns
             for word in re.split(r"[\s/\[\]|()]+", pattern) if word and not word.startswith("@")}
    assert arabizi_patterns and not english & words, sorted(english & words)


@pytest.mark.parametrize("note", [
    "هددها ينشر الصور بعد ٤٨ ساعة",
    "المبتز عطاها ٧٢ ساعة",
    "he threatened to post them within 48 hours",
    "he gave her 48 hours to pay",
    "mohla 48 sa3a",
])
def test_hours_beyond_a_day_are_extortion_not_a_24_hour_deadline(note):
    assert "deadline_24h" not in codes_of(note)
    assert level_of(note) == "medium"


@pytest.mark.parametrize("note", [
    "هددها ينشر الصور خلال ٢٤ ساعة",
    "هددها ينشر الصور بعد ساعة",
    "he will post them within hours",
    "he gave her 12 hours to pay",
])
def test_hours_within_a_day_are_still_a_24_hour_deadline(note):
    assert "deadline_24h" in codes_of(note)


# -- everyday words that looked like risk --------------------------------------------------------------------

@pytest.mark.parametrize("note", [
    "تكول سامحوني اذا ازعجتكم",
    "تكول قتلني الصداع",
    "the thought of her dad finding out is killing her",
])
def test_everyday_apologies_and_complaints_are_no_risk(note):
    assert level_of(note) == "low"


def test_a_farewell_and_a_real_threat_are_still_critical():
    assert level_of("تكول سامحوني يا اهلي") == "critical"
    assert level_of("her dad finding out is killing her, he will kill her") == "critical"


def test_a_denied_threat_to_kill_is_no_threat_but_an_undenied_one_is():
    assert level_of("اهلي ما راح يقتلوني بس راح يطردوني") != "critical"
    assert level_of("ما اعرف شسوي اهلي يكتلوني") == "critical"
    assert level_of("اهلي يكتلوني اذا عرفوا") == "critical"


@pytest.mark.parametrize("note", ["المبتز عمره ١٧", "اخوها عمره ١٦", "the blackmailer is 17 years old"])
def test_the_age_of_the_blackmailer_or_a_relative_is_not_the_victims(note):
    assert "minor" not in codes_of(note)


def test_the_victims_age_next_to_someone_elses_is_still_hers():
    assert "minor" in codes_of("البنت عمرها ١٥ والمبتز عمره ٢٠")
    assert "minor" in codes_of("المتصل عمره ١٦")


def test_fear_of_publication_is_extortion_not_publication():
    assert codes_of("خايفة من نشر الصور") == {"extortion"}
    assert "published" in codes_of("نشر الصور بالفيس")


# -- lexicon gaps found in review ----------------------------------------------------------------------------

@pytest.mark.parametrize("note, code", [
    ("عندي حبوب وراح اشربهن كلهن", "means_at_hand"),
    ("3indi 7boob w ra7 ashrabhom kulhom", "means_at_hand"),
    ("ra7 ashrab 7boob kulha", "means_at_hand"),
    ("she is planning to take pills tonight", "means_at_hand"),
    ("she said she will swallow the pills", "means_at_hand"),
    ("بلعت حبوب امها", "suicide_attempt"),
    ("شاربة حبوب", "suicide_attempt"),
    ("بالعة حبوب", "suicide_attempt"),
    ("شربت دوة فار", "suicide_attempt"),
    ("shrabt 7boob hwaya", "suicide_attempt"),
    ("المتصلة جارحة نفسها", "self_harm"),
    ("جارحة ايدها", "self_harm"),
    ("ضاربة نفسها بالموس", "self_harm"),
    ("العشيرة هدرت دمها", "honour_threat"),
    ("دمها صار مهدور", "honour_threat"),
    ("اهلي راح يخلصون عليه", "honour_threat"),
    ("تكول اريد اخلص من هالحياة", "suicidal_intent"),
    ("قررت اموت", "suicidal_intent"),
    ("ناوية اموت الليلة", "suicidal_intent"),
    ("law nashar el 9owar antahir", "suicidal_intent"),
])
def test_review_gaps_in_methods_attempts_threats_and_intent_are_critical(note, code):
    assessment = assess(CaseFacts(narrative=note))
    assert assessment.level == "critical"
    assert code in {r.code for r in assessment.reasons}


@pytest.mark.parametrize("note, code", [
    ("treed tmoot", "suicidal_thoughts"),
    ("tgool tireed timoot", "suicidal_thoughts"),
    ("صوري نزلت بالفيس", "published"),
    ("دزلهم الصور", "published"),
    ("حط الصور بالفيس", "published"),
    ("رفع الصور على الفيس", "published"),
    ("صار الفيديو عند اهلها", "published"),
    ("9owari nazlat bil face", "published"),
    ("فتاة تبلغ ١٤ عاما", "minor"),
    ("عمرها (15)", "minor"),
    ("المتصلة (١٥ سنة)", "minor"),
    ("هي ١٥ سنة", "minor"),
    ("البنت بعدها ١٥ سنة", "minor"),
    ("15 y/o", "minor"),
    ("بعدها بالمدرسة", "minor"),
    ("ana 15", "minor"),
    ("طفلة والمبتز يهددها", "minor"),
    ("المبتز هددها والمهلة ١٢ ساعة", "deadline_24h"),
])
def test_review_gaps_in_thoughts_publication_age_and_deadlines_are_high(note, code):
    assessment = assess(CaseFacts(narrative=note))
    assert assessment.level == "high"
    assert code in {r.code for r in assessment.reasons}


@pytest.mark.parametrize("note", [
    "راح اشرب الدوا مالتي",
    "تاخذ حبوب الضغط كل يوم",
    "she will take her pills",
    "هي ٢٠ سنة",
    "ana 25",
    "the caller (25) is scared",
])
def test_everyday_medicine_and_adult_ages_stay_out_of_the_new_entries(note):
    assert not codes_of(note) & {"means_at_hand", "suicide_attempt", "minor"}


def test_brackets_end_a_clause_except_around_a_number():
    from services.triage.normalise import tokenise
    assert tokenise("عمرها (15) سنة").clauses == (0, 0, 0)
    assert tokenise("هي (تبجي) هسه").clauses == (0, 1, 2)


@pytest.mark.parametrize("note", [
    "صحفية اتصلت تكول البنت تريد تنتحر الليلة",
    "a journalist called, the girl will kill herself tonight",
])
def test_any_professional_reporting_a_girls_intent_is_not_an_awareness_question(note):
    assert level_of(note) == "critical"


def test_an_awareness_question_about_suicide_stays_low():
    assert level_of("صحفية تسأل عن احصائيات الانتحار بسبب الابتزاز") == "low"
