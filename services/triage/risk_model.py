"""The lexicons as a dependency: loaded and compiled once when the service starts, so a broken lexicon
stops triage at start-up, loudly, instead of failing case after case."""
import os

from nameko.extensions import DependencyProvider

from services.triage.assessment import DEFAULT_LEXICON_DIRECTORY, Assessor


class RiskModel(DependencyProvider):
    def setup(self):
        directory = os.environ.get("SANAD_LEXICON_DIR", DEFAULT_LEXICON_DIRECTORY)
        self.assessor = Assessor.from_directory(directory)

    def get_dependency(self, worker_ctx):
        return self.assessor
