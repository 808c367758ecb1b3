"""The shared progress subscriber (`backend.domain.exports.fanout`) against the real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest
from redis.asyncio import Redis

from backend.domain.exports.fanout import RESYNC, Fanout, FanoutUnavailable, Inbox, Item
from gpu_worker.contract import ExportStatus, ProgressMessage
from tests.fixtures.redis_server import RedisServer
from tests.integration.exports.conftest import drop_fanout_connection

WAIT_S = 5.0
GRACE_S = 0.5
"""The outage grace of `own_fanout`: short, so the tests need not wait the production 5 s."""


@pytest.fixture
async def fanout(redis_url: str) -> AsyncIterator[Fanout]:
    fan = Fanout.from_url(redis_url, inbox_size=4)
    await fan.start()
    yield fan
    await fan.aclose()


@pytest.fixture
async def own_fanout(redis_server: RedisServer) -> AsyncIterator[Fanout]:
    """A fan-out on a Redis the test can kill, with a short outage grace."""
    fan = Fanout.from_url(redis_server.url, outage_grace_s=GRACE_S)
    await fan.start()
    yield fan
    await fan.aclose()


@pytest.fixture
def channel() -> str:
    return f"export:{uuid.uuid4()}"


async def publish(
    redis: Redis, channel: str, seq: int, status: ExportStatus = ExportStatus.PROCESSING
) -> None:
    message = ProgressMessage(export_id="e", user_id="u", seq=seq, status=status)
    await redis.publish(channel, msgspec.json.encode(message))


async def numsub(redis: Redis, channel: str) -> int:
    return int(dict(await redis.pubsub_numsub(channel))[channel.encode()])


async def take(inbox: Inbox) -> Item:
    item = await inbox.get(WAIT_S)
    assert item is not None, "nothing arrived"
    return item


async def seqs(inbox: Inbox, count: int) -> list[int]:
    return [item.seq for item in [await take(inbox) for _ in range(count)] if item is not RESYNC]


async def test_local_subscribers_share_one_redis_subscription_until_the_last_leaves(
    fanout: Fanout, redis: Redis, channel: str
) -> None:
    async with fanout.subscribe(channel) as first:
        async with fanout.subscribe(channel) as second:
            assert await numsub(redis, channel) == 1
            for seq in (1, 2, 3):
                await publish(redis, channel, seq)
            assert await seqs(first, 3) == await seqs(second, 3) == [1, 2, 3]
        assert await numsub(redis, channel) == 1
    assert await numsub(redis, channel) == 0


async def test_leaving_and_rejoining_at_once_keeps_the_channel_subscribed(
    fanout: Fanout, redis: Redis, channel: str
) -> None:
    async with fanout.subscribe(channel):
        pass
    async with fanout.subscribe(channel) as inbox:
        assert await numsub(redis, channel) == 1
        await publish(redis, channel, 1)
        assert await seqs(inbox, 1) == [1]


async def test_a_slow_subscriber_loses_its_oldest_updates_without_delaying_a_fast_one(
    fanout: Fanout, redis: Redis, channel: str
) -> None:
    async with fanout.subscribe(channel) as slow, fanout.subscribe(channel) as fast:
        for seq in range(1, 21):
            await publish(redis, channel, seq)
            assert await seqs(fast, 1) == [seq]
        assert await seqs(slow, 4) == [17, 18, 19, 20]
        assert slow.dropped == 16


async def test_a_terminal_message_gets_into_a_full_inbox(fanout: Fanout, redis: Redis, channel: str) -> None:
    async with fanout.subscribe(channel) as slow, fanout.subscribe(channel) as fast:
        for seq in range(1, 7):
            await publish(redis, channel, seq)
            assert await seqs(fast, 1) == [seq]
        await publish(redis, channel, 7, ExportStatus.COMPLETED)
        assert await seqs(fast, 1) == [7]
        final = [await take(slow) for _ in range(4)]
    assert [(m.seq, m.status) for m in final if m is not RESYNC] == [
        (4, "processing"),
        (5, "processing"),
        (6, "processing"),
        (7, "completed"),
    ]


async def test_after_redis_drops_the_connection_it_resubscribes_and_says_resync(
    fanout: Fanout, redis: Redis, channel: str
) -> None:
    async with fanout.subscribe(channel) as inbox:
        await drop_fanout_connection(redis)
        assert await take(inbox) is RESYNC
        assert await numsub(redis, channel) == 1
        await publish(redis, channel, 1)
        assert await seqs(inbox, 1) == [1]


async def test_a_malformed_message_is_dropped_and_the_stream_goes_on(
    fanout: Fanout, redis: Redis, channel: str
) -> None:
    async with fanout.subscribe(channel) as inbox:
        await redis.publish(channel, b"{not a progress message")
        await publish(redis, channel, 1)
        assert await seqs(inbox, 1) == [1]


async def test_an_idle_inbox_times_out_with_none() -> None:
    assert await Inbox().get(0.01) is None


async def test_a_subscriber_learns_that_redis_is_away_once_the_outage_outlasts_the_grace(
    own_fanout: Fanout, redis_server: RedisServer, channel: str
) -> None:
    async with own_fanout.subscribe(channel) as inbox:
        redis_server.kill()

        with pytest.raises(FanoutUnavailable):
            await inbox.get(GRACE_S + WAIT_S)


async def test_a_subscription_still_unconfirmed_when_the_grace_ends_fails(
    own_fanout: Fanout, redis_server: RedisServer, channel: str
) -> None:
    redis_server.kill()

    with pytest.raises(FanoutUnavailable):
        async with asyncio.timeout(GRACE_S + WAIT_S), own_fanout.subscribe(channel):
            pass


async def test_subscribing_once_the_outage_is_declared_fails_at_once(
    own_fanout: Fanout, redis_server: RedisServer, channel: str
) -> None:
    redis_server.kill()
    await asyncio.sleep(GRACE_S + 0.2)

    with pytest.raises(FanoutUnavailable):
        async with asyncio.timeout(0.1), own_fanout.subscribe(channel):
            pass


async def test_subscribing_works_again_once_redis_is_back(
    own_fanout: Fanout, redis_server: RedisServer, channel: str
) -> None:
    redis_server.kill()
    await asyncio.sleep(GRACE_S + 0.2)
    redis_server.start()
    publisher = Redis.from_url(redis_server.url)

    async with asyncio.timeout(WAIT_S):
        while True:  # until the reader has reconnected (its backoff)
            try:
                async with own_fanout.subscribe(channel) as inbox:
                    await publish(publisher, channel, 1)
                    assert await seqs(inbox, 1) == [1]
                    break
            except FanoutUnavailable:
                await asyncio.sleep(0.1)
    await publisher.aclose()
