"""Notify's nameko extensions: the partners' webhook endpoints as a dependency (settings read in setup(),
one HTTP sender, the bounded pool of attempts this process runs), and the timer that sweeps due
deliveries into that pool.

Attempts run in the pool, outside nameko's workers, so a graceful stop must wait for them itself. It
does so when the sweep timer stops: nameko stops entrypoints before dependencies, so attempts in flight
finish while the database and the outbox are still there to record and publish what came of them."""
import logging
import os

from nameko.extensions import DependencyProvider
from nameko.timer import Timer

from services.notify.dispatch import AttemptPool
from services.notify.handlers import Dispatch
from services.notify.sender import Sender
from services.notify.settings import from_environment

log = logging.getLogger(__name__)


class Webhooks(DependencyProvider):
    def setup(self):
        settings = from_environment(os.environ)
        if settings.urls.allow_private:
            log.warning("webhooks may go to private and loopback addresses (development, or "
                        "SANAD_ALLOW_PRIVATE_WEBHOOKS=1); never so in production")
        self.sender = Sender(settings.urls, settings.connect_timeout, settings.read_timeout,
                             settings.attempt_deadline, connections_per_host=settings.concurrency)
        self.dispatch = Dispatch(settings=settings, send=self.sender.post, resolve=self.sender.resolve,
                                 pool=AttemptPool(settings.concurrency, settings.per_endpoint,
                                                  settings.held_per_endpoint))

    def drain(self):
        """Wait for the attempts in flight (each ends within its deadline); any that cannot finish is taken
        up again when its lease runs out."""
        self.dispatch.pool.wait(timeout=self.dispatch.settings.attempt_deadline + 1)

    def stop(self):
        self.dispatch.pool.close()
        self.drain()
        self.sender.close()

    def get_dependency(self, worker_ctx):
        return self.dispatch


class SweepTimer(Timer):
    """nameko's timer, whose stop also waits for the attempts in flight (see the module's docstring)."""

    def stop(self):
        webhooks = [provider for provider in self.container.dependencies if isinstance(provider, Webhooks)]
        for provider in webhooks:
            provider.dispatch.pool.close()
        super().stop()
        for provider in webhooks:
            provider.drain()


sweep_timer = SweepTimer.decorator
