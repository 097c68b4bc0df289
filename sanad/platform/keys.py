"""The key file as a dependency: services seal and open personal fields with it."""
from nameko.extensions import DependencyProvider

from sanad import settings
from sanad.crypto import load_keys


class KeyFile(DependencyProvider):
    def setup(self):
        self.keys = load_keys(settings.from_environment().keys_file)

    def get_dependency(self, worker_ctx):
        return self.keys
