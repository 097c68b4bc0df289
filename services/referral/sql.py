"""Every query referral runs, against its own schema."""

PARTNERS_FOR = """
    SELECT p.id, p.name, p.services, p.governorates, p.accepting,
           (SELECT count(*) FROM referrals r
            WHERE r.partner_id = p.id AND r.status IN ('offered', 'accepted', 'in_progress')) AS open_referrals
    FROM partners p
    WHERE p.accepting AND p.services && %(services)s
      AND (%(governorate)s = ANY(p.governorates) OR 'nationwide' = ANY(p.governorates))
"""
INSERT_REFERRAL = """
    INSERT INTO referrals (id, case_id, reference, partner_id, service, level, created_at, updated_at)
    VALUES (%(id)s, %(case_id)s, %(reference)s, %(partner_id)s, %(service)s, %(level)s, %(now)s, %(now)s)
    ON CONFLICT (case_id, service) DO NOTHING
    RETURNING id
"""
INSERT_PARTNER = """
    INSERT INTO partners (id, name, services, governorates, accepting)
    VALUES (%(id)s, %(name)s, %(services)s, %(governorates)s, %(accepting)s)
"""
ALL_PARTNERS = "SELECT id, name, services, governorates, accepting FROM partners ORDER BY name"
