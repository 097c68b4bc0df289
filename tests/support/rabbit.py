"""A virtual host of the test run's own on the shared RabbitMQ, through the management API."""
import urllib.parse

import requests

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
