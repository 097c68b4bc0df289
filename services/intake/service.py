"""Intake: the HTTP API (and, later, the operators' UI) that records cases."""
import logging
from functools import partial

from marshmallow import ValidationError
from nameko.messaging import consume
from prometheus_client import Counter

from sanad.contracts import routing
from sanad.platform.database import Database
from sanad.platform.http import ApiError, http, json_response, read_json
from sanad.platform.inbox import handle_event
from sanad.platform.keys import KeyFile
from sanad.platform.observability import Observable
from sanad.platform.outbox import Outbox
from services.intake import handlers
from services.intake.schemas import load_new_case

log = logging.getLogger(__name__)

CASES_RECEIVED = Counter(
    "sanad_cases_received_total", "Cases recorded by intake.", ["channel", "governorate"],
)
MAX_IDEMPOTENCY_KEY = 200


class IntakeService(Observable):
    name = "intake"

    db = Database("intake")
    outbox = Outbox()
    keys = KeyFile()

    @http("POST", "/api/cases")
    def create_case(self, request):
        try:
            fields = load_new_case(read_json(request))
        except ValidationError as exc:
            raise ApiError(422, "invalid_case", "Some fields need correcting.", exc.messages) from None
        key = request.headers.get("Idempotency-Key")
        if key is not None and not (0 < len(key) <= MAX_IDEMPOTENCY_KEY):
            raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key must be 1 to 200 characters.",
                           {"Idempotency-Key": ["Must be 1 to 200 characters."]})
        try:
            with self.db.transaction() as cur:
                created = handlers.record_case(cur, self.outbox, self.keys, fields, idempotency_key=key)
        except handlers.DuplicateSubmission as dup:
            return json_response(200, self._created_body(dup.case), {"Idempotent-Replayed": "true"})
        CASES_RECEIVED.labels(channel=fields["channel"], governorate=fields["governorate"]).inc()
        body = self._created_body(created)
        return json_response(201, body, {"Location": body["status_url"]})

    @http("GET", "/api/cases/<uuid:case_id>")
    def get_case(self, request, case_id):
        with self.db.transaction() as cur:
            view = handlers.case_view(cur, case_id)
        if view is None:
            raise ApiError(404, "not_found", "No case has this id.")
        return json_response(200, view)

    @consume(routing.INTAKE_CASE_STATUS, requeue_on_error=True)
    def on_case_status(self, body):
        handler = partial(handlers.record_status, keys=self.keys)
        handle_event(self.db, routing.INTAKE_CASE_STATUS.name, body, handler)

    @staticmethod
    def _created_body(case):
        return {"id": str(case["id"]), "reference": case["reference"], "status_url": f"/api/cases/{case['id']}"}
