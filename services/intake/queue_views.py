"""Which cases each staff member's queue showed last, so that its reads are audited when what they show
changes rather than every time the screen refreshes.

Every read of the queue is a view of the cases on it (their references, levels, places and needs), so it
goes in the audit log with their ids. The operators' screen asks for its queue every five seconds, though:
an entry for each refresh would write thousands a shift for each operator, most of them saying again what
the last one said. A background refresh is audited when the set of cases it shows differs from the last
this process audited for that account; a page load or any other read always is. With more than one intake
process an account's refreshes may be audited once more in each, never less.
"""
import hashlib
from collections import OrderedDict

from nameko.extensions import DependencyProvider

MEMORY_SIZE = 4096  # accounts remembered; the least recently seen is forgotten first


class LastShown:
    def __init__(self, size=MEMORY_SIZE):
        self._size = size
        self._digests = OrderedDict()  # account id -> digest of the case ids its queue showed last

    def changed(self, viewer_id, case_ids) -> bool:
        """Remember that `viewer_id`'s queue now shows `case_ids`; True unless it showed just those last."""
        digest = hashlib.sha256(",".join(sorted(str(case_id) for case_id in case_ids)).encode()).digest()
        unchanged = self._digests.get(viewer_id) == digest
        self._digests[viewer_id] = digest
        self._digests.move_to_end(viewer_id)
        while len(self._digests) > self._size:
            self._digests.popitem(last=False)
        return not unchanged


class QueueViews(DependencyProvider):
    """One LastShown for the whole process."""

    def setup(self):
        self.last_shown = LastShown()

    def get_dependency(self, worker_ctx):
        return self.last_shown
