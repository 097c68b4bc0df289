"""Findings of the second review of triage: each test failed before its fix."""
import pytest

from services.intake.cases import triage_lane
from services.triage.assessment import CaseFacts, assess


def level_of(narrative: str) -> str:
    return assess(CaseFacts(narrative=narrative)).level


def codes_of(narrative: str) -> set[str]:
    return {reason.code for reason in assess(CaseFacts(narrative=narrative)).reasons}


@pytest.mark.parametrize("note", [
    "المبتز خبر ابوها وابوها كال راح يذبحها",
    "وصل خبر لاهلها واخوها كال راح يكتلها",
    "she posted a story on insta saying she wants to kill herself",
    "she read a message from him and says she will kill herself",
    "she heard a voice note from him and wants to end her life tonight",
    "he sent a series of messages saying he will kill her",
    "after she heard about it from her friends she said she will end it all",
    "سمعت عن اهلها انهم راح يذبحوها",
])
def test_everyday_words_and_the_iraqi_verb_khabbar_are_no_news_item(note):
    assert level_of(note) == "critical"
    assert "news_mention" not in codes_of(note)


@pytest.mark.parametrize("note", [
    "she saw a news story about a girl who killed herself",
    "شافت خبر بالتلفزيون عن بنت انتحرت",
    "she watched a film about suicide",
])
def test_a_real_news_item_about_someone_else_stays_low(note):
    assert level_of(note) == "low"


@pytest.mark.parametrize("note", [
    "he posted the pics last month and she says she wants to die",
    "she tried to kill herself last year and she says she will kill herself tonight",
    "حاولت تنتحر السنة الماضية وتكول راح انتحر الليلة",
    "هو يبتزها من السنة الماضية وتكول بالحرف اريد اقتل نفسي",
])
def test_a_past_word_does_not_turn_present_intent_into_history(note):
    assert level_of(note) == "critical"


def test_a_past_word_does_not_reach_across_a_reporting_verb():
    assert codes_of("تعرفت عليه قبل شهرين وكالت اريد اموت") == {"suicidal_thoughts"}


@pytest.mark.parametrize("note", ["she tried to kill herself last year", "حاولت تنتحر قبل سنتين",
                                  "قبل سنتين حاولت تنتحر"])
def test_an_attempt_in_the_past_is_still_an_earlier_attempt(note):
    assert codes_of(note) == {"prior_attempt"}


@pytest.mark.parametrize("code", ["prior_attempt", "past_suicidality"])
def test_an_earlier_attempt_or_past_suicidal_talk_goes_to_the_critical_lane(code):
    assert triage_lane({}, "high", {code}) == "critical"


@pytest.mark.parametrize("note, code", [
    ("المتصلة كالت انه اخذت ٢٠ حباية قبل نص ساعة", "suicide_attempt"),
    ("اخذت عشرين حبة بنادول", "suicide_attempt"),
    ("بلعت ٣٠ حبه من دوا امها", "suicide_attempt"),
    ("she swallowed 15 حباية", "suicide_attempt"),
    ("تكول اريد اشرب حبوب الضغط مال ابوي", "suicide_plan"),
    ("تكول راح اشرب حبوب امي", "suicide_plan"),
])
def test_a_number_of_tablets_swallowed_or_a_relatives_tablets_are_critical(note, code):
    assert level_of(note) == "critical"
    assert code in codes_of(note)


@pytest.mark.parametrize("note", ["اخذت حبة بنادول للصداع", "اخذت ٢ حبة مسكن", "عمرها ثلاثين سنة"])
def test_an_ordinary_dose_or_an_adult_age_in_words_is_no_risk(note):
    assert level_of(note) == "low"


@pytest.mark.parametrize("note", [
    "وصل الخبر لاهلها واخوها كال اذا صح الكلام راح يخلص عليها",
    "كالت ابوي حلف يخلص عليها",
    "ابن عمها ديهددها يكول راح اخلص عليج",
    "ابوها كالها لازم تموتين",
    "زوجها يكول راح يحركها بالنفط",
    "زوجها يكول راح يحرگها",
    "ابوها كال يدفنها حية",
    "عمها كال دمها حلال",
    "راح ادفنج بالحديقة",
    "the uncles want her blood",
    "akhooha ra7 y5alis 3aleha",
    "3ashirtha ra7 tektilha",
    "akhooha gal ra7 ydhba7ha",
    "ahlha ra7 ygsloon el 3ar",
])
def test_a_familys_euphemisms_for_killing_her_are_a_threat_to_kill(note):
    assert level_of(note) == "critical"
    assert codes_of(note) & {"honour_threat", "kill_threat"}


@pytest.mark.parametrize("note", ["ابوها كال البنت لازم تموت", "her brother says she deserves to die"])
def test_a_relative_saying_she_must_die_is_a_threat_not_her_suicidal_thoughts(note):
    assert "honour_threat" in codes_of(note)
    assert "suicidal_thoughts" not in codes_of(note)


@pytest.mark.parametrize("note", ["خلص الشغل عليها", "الفلوس راح تخلص عليها"])
def test_finishing_work_or_money_is_no_threat(note):
    assert level_of(note) == "low"


@pytest.mark.parametrize("note", [
    "تكول اريد انهي كلشي الليلة",
    "قالت سأضع حدا لحياتي إذا نشر الصور",
    "تكول راح اسوي شي بروحي",
    "going to do something stupid tonight",
    "تكول ما راح اعيش للصبح",
    "she says she won't live till morning",
    "won't be alive tomorrow",
    "wont be here tomorrow",
    "هو نشر الصور وراح اخلص من هاي الدنيا باجر",
    "she texted her sister goodbye",
    "she will suicide",
    "googling how to kill yourself",
    "she says she will drink سم tonight",
])
def test_common_phrasings_of_intent_plans_and_farewells_are_critical(note):
    assert level_of(note) == "critical"


@pytest.mark.parametrize("note, code", [
    ("افكر انهي كلشي", "suicidal_thoughts"),
    ("ماكو داعي اكمل", "hopelessness"),
    ("مابيه حيل اعيش", "hopelessness"),
    ("اريد الحك بابوي الله يرحمه", "suicidal_thoughts"),
    ("wants to join her late father", "suicidal_thoughts"),
    ("might as well be dead", "suicidal_thoughts"),
    ("done with life", "suicidal_thoughts"),
    ("whats the point of living", "hopelessness"),
    ("life has no meaning", "hopelessness"),
    ("he leaked the vid", "published"),
    ("bnt 15 sana", "minor"),
])
def test_common_phrasings_of_thoughts_hopelessness_publication_and_age_are_found(note, code):
    assert code in codes_of(note)


@pytest.mark.parametrize("note", ["she messaged her friend to say goodbye before the trip",
                                  "she will do something about it"])
def test_everyday_goodbyes_and_doing_something_are_no_risk(note):
    assert level_of(note) == "low"


def test_someone_who_attempted_an_hour_ago_and_is_in_hospital_is_a_crisis_now():
    assert level_of("صديقتي انتحرت قبل ساعة وهسه بالمستشفى") == "critical"


@pytest.mark.parametrize("note", [
    "her cousin killed herself last year and she says she will do the same",
    "بنت عمها انتحرت السنة الماضية وهي تكول راح اسوي مثلها",
])
def test_doing_the_same_as_someone_who_killed_herself_is_her_own_intent(note):
    assert "suicidal_intent" in codes_of(note)


def test_a_cousins_suicide_years_ago_is_someone_elses_not_her_earlier_attempt():
    assert codes_of("بنت عمها انتحرت قبل سنتين") == {"third_party_mention"}


def test_doing_the_same_as_a_sister_without_a_suicide_is_no_risk():
    assert level_of("she says she will do the same as her sister and go to college") == "low"


@pytest.mark.parametrize("note", [
    "his last message was two weeks ago and she wants to delete her account",
    "she blocked him, last call from him was on monday",
    "المبتز دزلها رسالة اخيرة قبل اسبوعين وبعدها اختفى",
    "اخر مرة اتصل بيها المبتز قبل اسبوع",
    "she wants the goodbye video he recorded deleted",
    "she said sorry for everything she sent him",
    "the caller joked she would kill her brother",
])
def test_the_blackmailers_last_message_an_apology_or_a_joke_are_not_critical(note):
    assert level_of(note) != "critical"


@pytest.mark.parametrize("note", ["her battery is dying", "حياتي راح تتحسن", "حياتي راحت احسن", "she sent him pics",
                                  "she sent him pics last year"])
def test_a_dying_battery_a_life_getting_better_or_pictures_sent_to_him_are_no_risk(note):
    assert level_of(note) == "low"


def test_a_clock_time_without_a_threat_is_no_deadline():
    assert "deadline_24h" not in codes_of("اتصلت الساعة ١١ بالليل وكالت تعبت من حياتي")
    assert "deadline_24h" in codes_of("ينشر الصور الساعه ١٢")


@pytest.mark.parametrize("note, code", [
    ("she left a goodbye note", "farewell"),
    ("كتبت رسالة اخيرة لاهلها", "farewell"),
    ("she says sorry for everything, she wants to die", "farewell"),
    ("he will kill her", "kill_threat"),
    ("he sent the photos to everyone", "published"),
])
def test_her_own_farewells_threats_to_her_and_publication_are_still_found(note, code):
    assert code in codes_of(note)


@pytest.mark.parametrize("note", ["she got angry at her dad and she wants to kill herself",
                                  "my cousin says she will kill herself tonight"])
def test_killing_herself_after_a_family_word_is_not_an_honour_threat(note):
    assert "honour_threat" not in codes_of(note)


@pytest.mark.parametrize("note, code", [
    ("تكول راح اسوي بنفسي شي", "suicidal_intent"),
    ("she talked about ending things tonight", "suicidal_intent"),
    ("her brother said ra7 aktilha if he sees el sowar", "honour_threat"),
    ("اخوها كال راح اشرب من دمها", "honour_threat"),
    ("ابوها كال ما اريد اشوفها عايشة", "honour_threat"),
    ("اخوها متوعدها", "violence_threat"),
    ("اخوها حالف عليها", "violence_threat"),
    ("كالت ما ابي اصحى باجر", "suicidal_thoughts"),
])
def test_more_variants_of_intent_and_family_threats_from_the_review_are_found(note, code):
    assert code in codes_of(note)


@pytest.mark.parametrize("note", ["she is ending things with him today", "اهلها ما راح يقتلوها"])
def test_ending_a_relationship_or_a_denied_threat_is_no_risk(note):
    assert level_of(note) == "low"


def test_a_rope_in_her_room_is_means_at_hand():
    assert "means_at_hand" in codes_of("she said a while ago she sent him pics and she has rope in her room")


@pytest.mark.parametrize("note, code", [
    ("تكول اني اجرح بنفسي من اسبوع", "self_harm"),
    ("تكول راح ازب روحي من السطح", "suicide_plan"),
    ("تكول راح اضب روحي بالشط", "suicide_plan"),
    ("كانت تدور بالكوكل شلون الواحد ينتحر", "suicide_plan"),
    ("ماكو غير الموت", "suicidal_intent"),
    ("ماكو حل غير اني انتحر", "suicidal_intent"),
    ("تكول راح ارتاح منكم كلكم الليلة", "suicidal_intent"),
    ("كالت ما الي احد واريد اروح عند ربي", "suicidal_thoughts"),
    ("she wants to kill hersef", "suicidal_intent"),
])
def test_spelling_variants_and_iraqi_phrasings_from_the_review_are_found(note, code):
    assert code in codes_of(note)


@pytest.mark.parametrize("note", ["ماكو غير الموت يفرقنا", "راح اضب اغراضي واروح لبيت اهلي", "راح اروح لبيت الله"])
def test_love_packing_and_pilgrimage_are_no_risk(note):
    assert level_of(note) == "low"


@pytest.mark.parametrize("note", [
    "اتصلت وكالت اني مخلصة على روحي الليلة",
    "كالتلي ما بقى عندي شي وبعدين سكتت شويه وكالت راح اسويها الليلة",
    "he gave her until tonight to pay or he sends everything to her husband, she is saying khalas ma a3eesh",
    "هو كال عندج للمغرب وهي تكول ما اريد اعيش",
    "he said 24 hours and she says she doesnt want to live",
])
def test_intent_and_ideation_under_a_deadline_from_the_review_are_critical(note):
    assert level_of(note) == "critical"


@pytest.mark.parametrize("note, code", [("she wants it all to stop", "suicidal_thoughts"),
                                        ("she said ma a7ib a3eesh", "suicidal_thoughts")])
def test_wanting_it_all_to_stop_or_not_liking_to_live_are_suicidal_thoughts(note, code):
    assert code in codes_of(note)


@pytest.mark.parametrize("note", ["اخوها الصغير عمره ١٥ هو اللي شاف الصور وهو ساكت", "she wants the calls to stop",
                                  "راح اصلي المغرب"])
def test_a_younger_brothers_age_calls_stopping_or_a_prayer_are_no_risk(note):
    assert level_of(note) == "low"


def test_hopelessness_goes_to_the_critical_lane():
    assert triage_lane({}, "high", {"hopelessness"}) == "critical"
