"""Twelve people liking and unliking one post at once: no 5xx (MariaDB chose deadlock victims before the
post row was locked first), and the count is exactly the number of likes left."""

import asyncio
import random

from tests.handlers.test_community import publish
from tests.support.jobs import finished_job

LIKERS = 12
ROUNDS = 12


async def test_concurrent_likes_and_unlikes_never_fail_and_count_right(users):
    author = await users("author")
    post = await publish(author, await finished_job(author))
    likers = [await users(f"liker{i}") for i in range(LIKERS)]
    statuses: list[int] = []

    async def like_and_unlike(index: int, client) -> bool:
        liked = False
        for _ in range(ROUNDS):
            liked = random.random() < 0.6
            response = await client.request("PUT" if liked else "DELETE", f"/api/posts/{post['id']}/like")
            statuses.append(response.status_code)
            await asyncio.sleep(random.uniform(0, 0.2))
        return liked

    random.seed(15)
    final = await asyncio.gather(*(like_and_unlike(i, c) for i, c in enumerate(likers)))
    failures = [s for s in statuses if s >= 500]
    assert not failures, f"{len(failures)} of {len(statuses)} requests failed: {failures}"
    assert all(s == 200 for s in statuses), statuses
    count = (await author.get(f"/api/posts/{post['id']}")).json()["post"]["like_count"]
    assert count == sum(final), (count, sum(final))
