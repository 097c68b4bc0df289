"""Breaking Sanad on purpose: the broker stopped, the database restarted, each service killed in the middle
of a message, duplicated and out-of-order events, a poison message, a graceful shutdown, and all of them at
random while cases keep arriving. The six real service processes run against a RabbitMQ node and a
PostgreSQL cluster of this module's own (the machine's shared ones are never touched), and every test ends
by checking that each case a caller was told was recorded went all the way to its partners, once in effect.
"""
import signal
import time

import pytest

from tests.conftest import ARTIFACTS
from tests.integration.conftest import free_port_base, sanad_cli
from tests.support.faults import CASE, Bench

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bench(keys_file):
    made = Bench(keys_file, ARTIFACTS / "logs" / "test_faults", free_port_base(), sanad_cli)
    try:
        made.start()
        yield made
    finally:
        made.close()


@pytest.fixture
def fresh(bench):
    """Each test starts with everything up, whatever the test before it broke."""
    bench.ensure_all_running()
    bench.partner.delay = 0.0
    return bench


def test_cases_keep_being_accepted_while_the_broker_is_down_and_all_go_through_when_it_returns(fresh):
    before = [fresh.submit(CASE) for _ in range(3)]
    fresh.wait_processed(before)
    pids = fresh.pids()

    fresh.rabbit.stop()
    during = []
    for _ in range(10):
        answers = []
        during.append(fresh.submit(CASE, timeout=0, answers=answers))
        assert answers[-1][0] == 201, "intake must accept a case while the broker is down"
    pending = fresh.rows("intake", "SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")[0]["n"]
    assert pending >= len(during), "the cases' events wait in intake's outbox"
    time.sleep(3)  # the relay and every consumer try, and fail, to reconnect meanwhile
    fresh.rabbit.start()

    fresh.wait_processed(before + during, timeout=120)
    fresh.assert_once_in_effect(before + during)
    assert fresh.stack.any_exited() == {} and fresh.pids() == pids, "no service was restarted"
