"""The release ledger's lock: a release waiting on another says so, then goes on."""

from __future__ import annotations

import logging
import threading

from filelock import FileLock

from socialgradient.release import ledger


def test_a_release_waiting_for_the_lock_says_so_then_takes_it(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(ledger, "LOCK_QUIET_S", 0.05)
    led = ledger.Ledger(tmp_path / "ledger")
    other = FileLock(led._folder() / ".lock")
    other.acquire()  # another release holds the ledger
    entered = threading.Event()

    def release_of_ours():
        with led.locked():
            entered.set()

    with caplog.at_level(logging.WARNING, logger=ledger.__name__):
        thread = threading.Thread(target=release_of_ours)
        thread.start()
        assert not entered.wait(0.5)  # it waits while the other holds the lock
        other.release()
        thread.join(10)
    assert entered.is_set()
    assert any("waiting for the release ledger's lock" in r.message for r in caplog.records)


def test_a_free_lock_is_taken_without_a_word(tmp_path, caplog):
    led = ledger.Ledger(tmp_path / "ledger")
    with caplog.at_level(logging.WARNING, logger=ledger.__name__), led.locked():
        pass
    assert not caplog.records
    with led.locked():  # released: taken again at once
        pass
