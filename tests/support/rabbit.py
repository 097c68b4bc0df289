"""A virtual host of the test run's own on the shared RabbitMQ, through the management API."""
import urllib.parse

import requests
from kombu import Connection

from sanad.contracts import routing

MANAGEMENT_URL = "http://127.0.0.1:15672/api"
AUTH = ("guest", "guest")


def create_vhost(name):
    quoted = urllib.parse.quote(name, safe="")
    requests.put(f"{MANAGEMENT_URL}/vhosts/{quoted}", auth=AUTH, timeout=10).raise_for_status()
    requests.put(f"{MANAGEMENT_URL}/permissions/{quoted}/guest", auth=AUTH, timeout=10,
                 json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()


def delete_vhost(name):
    quoted = urllib.parse.quote(name, safe="")
    requests.delete(f"{MANAGEMENT_URL}/vhosts/{quoted}", auth=AUTH, timeout=30)


def queue_depths(vhost):
    """{queue name: messages ready + unacknowledged} for every queue of the vhost."""
    quoted = urllib.parse.quote(vhost, safe="")
    response = requests.get(f"{MANAGEMENT_URL}/queues/{quoted}", auth=AUTH, timeout=10)
    response.raise_for_status()
    return {q["name"]: q.get("messages", 0) for q in response.json()}


def publish_events(amqp_uri, *events):
    """Publish events to Sanad's exchange as a relay would (with confirms), bypassing any service."""
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as connection:
        producer = connection.Producer()
        for event in events:
            producer.publish(event.to_message(), exchange=routing.EXCHANGE, routing_key=event.routing_key,
                             serializer="json", delivery_mode=2)
