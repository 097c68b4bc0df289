"""Which lane a new case travels to triage on, read from its note as well as its checklist.

Triage decides a case's risk. Intake only needs to know, before triage has read the case, whether a life
may be in danger, so that such a case never waits behind a backlog for triage to find out: an operator
may write "she says she will end it tonight" and tick nothing. Intake asks triage's own risk model (pure
code, the same lexicons: services/triage/assessment.py), so the rules stay in one place; triage still
makes the assessment that counts.

If the model cannot be loaded, intake routes by the checklist alone and says so in its log: intake must
take calls whatever happens to triage's lexicons.
"""
import logging
import os
from functools import partial

from nameko.extensions import DependencyProvider

from services.intake import cases
from services.triage.assessment import DEFAULT_LEXICON_DIRECTORY, Assessor, CaseFacts

log = logging.getLogger(__name__)


def triage_lane(assessor, narrative, facts) -> str:
    """The lane for a case with this note and these checklist facts (as record_case passes them). A case
    the checklist already sends to the critical lane is not read first: the note could only agree, and
    its request goes first among intake's from the moment its lane is known (OutboxWriter.go_first)."""
    by_checklist = cases.triage_lane(facts)
    if assessor is None or by_checklist == "critical":
        return by_checklist
    try:
        assessment = assessor.assess(CaseFacts(narrative=narrative, **facts))
    except Exception:  # noqa: BLE001 -- a note the model cannot read goes to a person first, as in triage
        return "critical"
    return cases.triage_lane(facts, assessment.level, {reason.code for reason in assessment.reasons})


class LaneScreen(DependencyProvider):
    """Workers get triage_lane(narrative, facts), bound to triage's lexicons (SANAD_LEXICON_DIR, as triage)."""

    def setup(self):
        directory = os.environ.get("SANAD_LEXICON_DIR", DEFAULT_LEXICON_DIRECTORY)
        try:
            self.assessor = Assessor.from_directory(directory)
        except Exception:  # noqa: BLE001 -- see the module's docstring
            log.error("triage's lexicons could not be loaded: new cases go to triage's critical lane by their "
                      "checklist alone", exc_info=True)
            self.assessor = None

    def get_dependency(self, worker_ctx):
        return partial(triage_lane, self.assessor)
