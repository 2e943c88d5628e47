from server.jobs.fairqueue import Entry, FairQueue


def entry(job, user, model="m"):
    return Entry(job_id=job, user_id=user, model=model, item=None)


def drain(queue, is_loaded=lambda m: False):
    order = []
    while (e := queue.pop(is_loaded)) is not None:
        order.append(e.job_id)
    return order


def test_round_robin_across_users():
    q = FairQueue()
    for i in range(4):
        q.push(entry(f"a{i}", 1))
    for i in range(2):
        q.push(entry(f"b{i}", 2))
    q.push(entry("c0", 3))
    assert [e.job_id for e in q.order()] == ["a0", "b0", "c0", "a1", "b1", "a2", "a3"]
    assert q.places()["c0"] == 3
    assert drain(q) == ["a0", "b0", "c0", "a1", "b1", "a2", "a3"]


def test_a_newcomer_goes_before_the_user_just_served():
    q = FairQueue()
    q.push(entry("a0", 1))
    q.push(entry("a1", 1))
    assert q.pop().job_id == "a0"
    q.push(entry("b0", 2))
    assert drain(q) == ["b0", "a1"]


def test_loaded_model_jumps_at_most_one_turn():
    q = FairQueue()
    q.push(entry("a0", 1, "cold"))
    q.push(entry("b0", 2, "warm"))
    q.push(entry("c0", 3, "warm"))
    loaded = lambda model: model == "warm"  # noqa: E731
    assert q.pop(loaded).job_id == "b0"  # one place ahead of a0
    assert q.pop(loaded).job_id == "a0"  # passed over once, a0 now goes whatever is loaded
    assert q.pop(loaded).job_id == "c0"


def test_remove_and_counts():
    q = FairQueue()
    q.push(entry("a0", 1))
    q.push(entry("a1", 1))
    assert q.count_for(1) == 2 and len(q) == 2 and "a1" in q
    assert q.remove("a0").job_id == "a0" and q.remove("missing") is None
    assert drain(q) == ["a1"] and len(q) == 0
