"""Every query triage runs, against its own schema."""

INSERT_ASSESSMENT = """
    INSERT INTO assessments (case_id, reference, event_id, level, score, reasons, evidence_sealed,
                             lexicon_version, received_at, assessed_at)
    VALUES (%(case_id)s, %(reference)s, %(event_id)s, %(level)s, %(score)s, %(reasons)s, %(evidence_sealed)s,
            %(lexicon_version)s, %(received_at)s, %(assessed_at)s)
    ON CONFLICT (case_id) DO NOTHING
    RETURNING case_id
"""
