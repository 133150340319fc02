"""The embedded broker (config/broker.py) under concurrent processes and crashes.

Several publisher and consumer *processes* share one folder, as web, beat and the worker do
under ``make run``. Each message must arrive exactly once, nothing may be left behind, no
process may crash; a consumer killed with SIGKILL loses none of the messages it held.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.transport import filesystem

from config import broker

pytestmark = pytest.mark.reliability

QUEUE = Queue("hammer", Exchange("hammer", type="direct"), routing_key="hammer")


def _options(root: Path) -> dict:
    return {
        "data_folder_in": str(root / "out"),
        "data_folder_out": str(root / "out"),
        "control_folder": str(root / "control"),
        "claimed_folder": str(root / "claimed"),
        "corrupt_folder": str(root / "corrupt"),
        "polling_interval": 0.01,
    }


def _connection(root: Path) -> Connection:
    return Connection(transport=broker.Transport, transport_options=_options(root))


def _publish(root: str, prefix: str, count: int) -> None:
    with _connection(Path(root)) as conn:
        producer = Producer(conn.default_channel)
        for i in range(count):
            producer.publish({"id": f"{prefix}-{i}"}, exchange=QUEUE.exchange,
                             routing_key="hammer", declare=[QUEUE], serializer="json")  # fmt: skip


def _consume(root: str, out: str, done, ack: bool = True) -> None:
    """Take messages until the publishers are done and the queue stayed empty for a while."""
    seen: list[str] = []

    def on_message(body, message):
        seen.append(body["id"])
        if ack:
            message.ack()
        else:  # will be killed: keep what it holds on disk for the test (atomically)
            Path(out + ".tmp").write_text(json.dumps(seen))
            os.replace(out + ".tmp", out)

    with (
        _connection(Path(root)) as conn,
        Consumer(conn, [QUEUE], callbacks=[on_message], accept=["json"]),
    ):
        idle_since = time.monotonic()
        while True:
            try:
                conn.drain_events(timeout=0.2)
                idle_since = time.monotonic()
            except TimeoutError:
                if done.is_set() and time.monotonic() - idle_since > 1.5:
                    break
    Path(out).write_text(json.dumps(seen))


@pytest.fixture(autouse=True)
def _fresh_bindings():
    """kombu keeps bindings per process; each test has its own folders, so forget them."""
    broker.Transport.global_state.clear()
    yield
    broker.Transport.global_state.clear()


def _folders(root: Path) -> None:
    for sub in ("out", "control"):
        (root / sub).mkdir(parents=True, exist_ok=True)


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_publishers_and_consumers_in_parallel_deliver_each_message_exactly_once(tmp_path):
    _folders(tmp_path)
    ctx = multiprocessing.get_context("fork")
    done = ctx.Event()
    publishers = [
        ctx.Process(target=_publish, args=(str(tmp_path), f"p{n}", 750)) for n in range(4)
    ]
    consumers = [
        ctx.Process(target=_consume, args=(str(tmp_path), str(tmp_path / f"c{n}.json"), done))
        for n in range(3)
    ]
    for process in consumers + publishers:
        process.start()
    for process in publishers:
        process.join(timeout=120)
    done.set()
    for process in consumers:
        process.join(timeout=120)

    assert [p.exitcode for p in publishers + consumers] == [0] * 7, "a process crashed"
    received = [i for n in range(3) for i in json.loads((tmp_path / f"c{n}.json").read_text())]
    expected = {f"p{p}-{i}" for p in range(4) for i in range(750)}
    assert len(received) == len(set(received)), "a message was delivered twice"
    assert set(received) == expected, f"{len(expected - set(received))} messages lost"
    assert all(json.loads((tmp_path / f"c{n}.json").read_text()) for n in range(3)), (
        "every consumer took part"
    )
    # Nothing left over: no message, no temporary file, no claim, nothing set aside.
    assert _files(tmp_path / "out") == []
    assert [n for n in _files(tmp_path / "claimed") if n.endswith(".msg")] == []
    assert _files(tmp_path / "corrupt") == []


def test_messages_held_by_a_consumer_killed_with_sigkill_are_delivered_again(tmp_path):
    _folders(tmp_path)
    _publish(str(tmp_path), "m", 50)
    ctx = multiprocessing.get_context("fork")
    never = ctx.Event()
    # A consumer that takes messages and never acks them (a worker mid-task), then dies.
    holder = ctx.Process(target=_consume, args=(str(tmp_path), str(tmp_path / "h.json"), never),
                         kwargs={"ack": False})  # fmt: skip
    holder.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (tmp_path / "h.json").exists():
        time.sleep(0.05)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    held = json.loads((tmp_path / "h.json").read_text())
    assert held, "the consumer took a message before it died"
    assert any(p.suffix == ".msg" for p in (tmp_path / "claimed").rglob("*")), (
        "its unacked messages were kept as claims, not deleted"
    )

    done = ctx.Event()
    done.set()
    heir = ctx.Process(target=_consume, args=(str(tmp_path), str(tmp_path / "c.json"), done))
    heir.start()
    heir.join(timeout=60)

    received = json.loads((tmp_path / "c.json").read_text())
    assert sorted(received) == sorted(f"m-{i}" for i in range(50)), "all 50, each once"
    assert set(held) <= set(received)
    assert [n for n in _files(tmp_path / "claimed") if n.endswith(".msg")] == []


def test_a_message_file_being_written_is_never_read_half_written(tmp_path):
    """kombu's own writer creates the final name first, then writes: a reader that lists the
    folder in between reads an empty file (the JSONDecodeError that killed the worker)."""
    _folders(tmp_path)
    partial = tmp_path / "out" / f"{time.time_ns():020d}_x.hammer.msg"
    partial.write_bytes(b'{"body": "trunc')  # as a non-atomic writer leaves it mid-write

    with _connection(tmp_path) as conn:
        channel = conn.default_channel
        with pytest.raises(filesystem.Empty):
            channel._get("hammer")  # young: put back for later, no crash
        assert partial.exists()

        old = time.time() - broker.PARTIAL_GRACE_SECONDS - 1
        os.utime(partial, (old, old))
        channel._deferred.clear()
        with pytest.raises(filesystem.Empty):
            channel._get("hammer")  # still unreadable long after: set aside, no crash
        assert not partial.exists()
        assert _files(tmp_path / "corrupt") == [partial.name]

        # The queue keeps working.
        _publish(str(tmp_path), "after", 1)
        assert channel._get("hammer")["properties"]["delivery_tag"]


def test_a_write_in_progress_is_invisible_to_readers(tmp_path, monkeypatch):
    """The writer's temporary file is in the same folder under a name no reader takes."""
    _folders(tmp_path)
    seen_during_write: list[list[str]] = []
    real_fsync = os.fsync

    def fsync_and_look(fd):
        if seen_during_write:  # only the file's fsync, before the rename
            return real_fsync(fd)
        with _connection(tmp_path) as conn:
            try:
                conn.default_channel._get("hammer")
                seen_during_write.append(["a message was readable before it was whole"])
            except filesystem.Empty:
                seen_during_write.append(sorted(os.listdir(tmp_path / "out")))
        return real_fsync(fd)

    monkeypatch.setattr(broker.os, "fsync", fsync_and_look)
    _publish(str(tmp_path), "w", 1)
    monkeypatch.undo()

    first = seen_during_write[0]
    assert len(first) == 1 and first[0].startswith(".") and first[0].endswith(".tmp"), first
    with _connection(tmp_path) as conn:
        assert conn.default_channel._get("hammer")


def test_filesystem_urls_resolve_to_the_crash_safe_transport():
    import config.celery  # noqa: F401 - registers the alias

    with Connection("filesystem://", transport_options=_options(Path("/nonexistent"))) as conn:
        assert conn.transport_cls == "filesystem"
        assert isinstance(conn.transport, broker.Transport)


def test_a_connection_does_not_warn_about_a_missing_hostname(caplog, tmp_path):
    """kombu warned "No hostname was supplied" on every connection to a folder."""
    broker.register()
    with caplog.at_level("WARNING"), Connection("filesystem://") as conn:
        assert isinstance(conn.transport, broker.Transport)
        conn.info()
    assert "hostname" not in caplog.text


def test_unacked_messages_go_back_once_on_a_clean_close_and_on_reject(tmp_path):
    _folders(tmp_path)
    _publish(str(tmp_path), "r", 2)
    names_before = _files(tmp_path / "out")

    with _connection(tmp_path) as conn:
        channel = conn.default_channel
        first = channel.basic_get("hammer")
        second = channel.basic_get("hammer")
        assert _files(tmp_path / "out") == []
        second.reject(requeue=True)  # the very file goes back, under its own name
        assert _files(tmp_path / "out") == names_before[1:]
        # `first` is neither acked nor rejected: closing the channel restores it.
    assert first is not None
    assert _files(tmp_path / "out") == names_before, "both back, once each, in their order"
    assert _files(tmp_path / "claimed") == [], "the claim folder is gone with its channel"

    with _connection(tmp_path) as conn:
        channel = conn.default_channel
        message = channel.basic_get("hammer")
        message.ack()
        assert _files(tmp_path / "out") == names_before[1:]
