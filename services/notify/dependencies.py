"""The partners' webhook endpoints as a nameko dependency: settings read in setup(), one HTTP sender,
and the bounded pool of attempts this process runs."""
import os

from nameko.extensions import DependencyProvider

from services.notify.dispatch import AttemptPool
from services.notify.handlers import Dispatch
from services.notify.sender import Sender
from services.notify.settings import from_environment


class Webhooks(DependencyProvider):
    def setup(self):
        settings = from_environment(os.environ)
        sender = Sender(settings.urls, settings.connect_timeout, settings.read_timeout, settings.attempt_deadline)
        self.dispatch = Dispatch(settings=settings, send=sender.post, resolve=sender.resolve,
                                 pool=AttemptPool(settings.concurrency, settings.per_endpoint))

    def stop(self):
        # Attempts in flight finish (each within its deadline) and record what came of them; any that
        # cannot is taken up again when its lease runs out.
        self.dispatch.pool.wait(timeout=self.dispatch.settings.attempt_deadline + 1)

    def get_dependency(self, worker_ctx):
        return self.dispatch
