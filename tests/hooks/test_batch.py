"""The batcher (`gateway/hooks/batch.py`) with plain async flush functions: every caller gets its
result or an exception — never a wait for ever."""

from __future__ import annotations

import asyncio

import pytest

from gateway.hooks.batch import Batcher


async def test_results_go_to_their_callers_in_batches_of_at_most_max_size() -> None:
    batches: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        batches.append(items)
        await asyncio.sleep(0.01)
        return [item * 10 for item in items]

    batcher: Batcher[int, int] = Batcher(flush, max_size=3)
    results = await asyncio.gather(*(batcher.submit(n) for n in range(7)))
    assert results == [n * 10 for n in range(7)]
    assert batches == [[0, 1, 2], [3, 4, 5], [6]]  # everything asked at once, max_size a time


@pytest.mark.parametrize("returned", [0, 1, 4], ids=["none", "fewer", "more"])
async def test_a_flush_with_the_wrong_number_of_results_fails_every_caller(returned: int) -> None:
    async def flush(items: list[str]) -> list[str]:
        await asyncio.sleep(0)
        return ["x"] * (returned if len(items) > 1 else len(items))

    batcher: Batcher[str, str] = Batcher(flush)
    first = asyncio.ensure_future(batcher.submit("a"))  # flushed alone, fine
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(batcher.submit(item)) for item in "bcd"]  # one batch of 3
    done, pending = await asyncio.wait([first, *rest], timeout=2)
    assert not pending, "a caller was left waiting"
    assert first.result() == "x"
    for future in rest:
        with pytest.raises(RuntimeError, match="returned .* results for 3 items"):
            future.result()
    assert await asyncio.wait_for(batcher.submit("e"), 2) == "x"  # and it carries on


async def test_a_failing_flush_fails_its_callers_and_the_next_batch_still_runs() -> None:
    calls = 0

    async def flush(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        if calls == 1:
            raise ConnectionError("redis went away")
        return items

    batcher: Batcher[int, int] = Batcher(flush)
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(batcher.submit(2))  # queued while the first flush runs
    await asyncio.wait([first, second], timeout=2)
    with pytest.raises(ConnectionError):
        first.result()
    assert second.result() == 2


async def test_callers_are_not_left_waiting_when_the_flush_task_is_cancelled() -> None:
    started = asyncio.Event()

    async def flush(items: list[int]) -> list[int]:
        started.set()
        await asyncio.sleep(60)
        return items

    batcher: Batcher[int, int] = Batcher(flush, name="doomed")
    first = asyncio.ensure_future(batcher.submit(1))
    await started.wait()
    second = asyncio.ensure_future(batcher.submit(2))  # waits for the next flush
    await asyncio.sleep(0)
    [task] = [t for t in asyncio.all_tasks() if t.get_name() == "doomed"]
    task.cancel()  # as at shutdown
    done, pending = await asyncio.wait([first, second], timeout=2)
    assert not pending
    assert all(future.cancelled() for future in done)
