"""Every query triage runs, against its own schema."""
from sanad.platform.pool import NO_WHOLE_TABLE_READS, Prepared

_INSERT_ASSESSMENT = """
    INSERT INTO assessments (case_id, reference, event_id, level, score, reasons, evidence_sealed,
                             lexicon_version, received_at, assessed_at, governorate, needs, consents,
                             preferences_sealed)
    VALUES (%(case_id)s, %(reference)s, %(event_id)s, %(level)s, %(score)s, %(reasons)s, %(evidence_sealed)s,
            %(lexicon_version)s, %(received_at)s, %(assessed_at)s, %(governorate)s, %(needs)s, %(consents)s,
            %(preferences_sealed)s)
"""
# A case assessed before, under another event id, inserts nothing and returns nothing.
INSERT_ASSESSMENT = Prepared(_INSERT_ASSESSMENT + "ON CONFLICT (case_id) DO NOTHING RETURNING case_id")
# For a case a batch has read it has not assessed: one assessed since fails on the table's key.
INSERT_NEW_ASSESSMENT = Prepared(_INSERT_ASSESSMENT)
# Planned on a table never analysed, the lookup read the whole table: NO_WHOLE_TABLE_READS.
ASSESSED_AMONG = Prepared("SELECT case_id FROM assessments WHERE case_id = ANY(%(case_ids)s::uuid[])",
                          planner=NO_WHOLE_TABLE_READS)
ASSESSMENT_OF_CASE = "SELECT * FROM assessments WHERE case_id = %(case_id)s FOR UPDATE"

INSERT_OVERRIDE = """
    INSERT INTO overrides (event_id, case_id, previous_level, level, reason_sealed, overridden_by, role,
                           overridden_at, recorded_at)
    VALUES (%(event_id)s, %(case_id)s, %(previous_level)s, %(level)s, %(reason_sealed)s, %(overridden_by)s,
            %(role)s, %(overridden_at)s, %(recorded_at)s)
"""

# Key rotation
# `preferences` is what a row assessed before migration 0004 kept in the clear: reseal seals it.
ASSESSMENTS_TO_RESEAL = """
    SELECT case_id, evidence_sealed, preferences_sealed, preferences FROM assessments
    WHERE case_id > %(after)s
      AND (evidence_sealed IS NOT NULL OR preferences_sealed IS NOT NULL OR preferences IS NOT NULL)
    ORDER BY case_id LIMIT %(limit)s FOR UPDATE
"""
UPDATE_ASSESSMENT_SEAL = """
    UPDATE assessments
    SET evidence_sealed = %(evidence_sealed)s, preferences_sealed = %(preferences_sealed)s, preferences = NULL
    WHERE case_id = %(id)s
"""
OVERRIDES_TO_RESEAL = """
    SELECT event_id, case_id, reason_sealed FROM overrides WHERE event_id > %(after)s
    ORDER BY event_id LIMIT %(limit)s FOR UPDATE
"""
UPDATE_OVERRIDE_SEAL = "UPDATE overrides SET reason_sealed = %(reason_sealed)s WHERE event_id = %(id)s"
