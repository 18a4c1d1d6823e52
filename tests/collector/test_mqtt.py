from __future__ import annotations

import random

from collector.mqtt import MAX_BACKOFF_S, backoff_s, subscription
from supplymeter.config import MqttSettings


def test_backoff_doubles_to_a_ceiling_with_jitter() -> None:
    rng = random.Random(1)
    for attempt, ceiling in enumerate([1, 2, 4, 8, 16, 30, 30, 30]):
        waits = [backoff_s(attempt, rng) for _ in range(200)]
        assert ceiling / 2 <= min(waits) and max(waits) <= ceiling <= MAX_BACKOFF_S
        assert max(waits) - min(waits) > ceiling / 4  # spread: collectors do not move in step


def test_shared_subscription_topic() -> None:
    assert subscription(MqttSettings()) == "energy/v1/#"
    assert subscription(MqttSettings(shared_group="collectors")) == "$share/collectors/energy/v1/#"
