"""One writer per dataset folder and run folder, checked with real second processes (SIGSTOP/SIGKILL holders)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from refine_cli.cli.app import app
from refine_cli.data.format.unified import UnifiedDataset
from refine_cli.errors import RefineError
from refine_cli.locks import hold_lock, holder_file_for, read_holder, wait_for_writer
from tests.support.processes import reaping, spawn, wait_for_holder

_HOLD = "import sys, time\nfrom refine_cli.locks import hold_lock\nwith hold_lock(sys.argv[1], 'test folder'):\n"
_HOLD += "    print('held', flush=True)\n    time.sleep(60)\n"


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    with reaping() as started:
        yield started


def _one_line(result) -> str:  # noqa: ANN001 - click Result
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_holder_is_named_and_a_killed_holder_releases_the_lock(tmp_path: Path, processes: list) -> None:
    target = tmp_path / "out"
    holder = spawn(["-c", _HOLD, str(target)])
    processes.append(holder)
    wait_for_holder(target, holder)
    with pytest.raises(RefineError) as refused:
        with hold_lock(target, "test folder", wait=0.2):
            pass
    message = refused.value.one_line()
    assert f"test folder {target} is in use by pid {holder.pid} on " in message and "-c" in message
    holder.kill()  # SIGKILL: no cleanup code runs, the sidecar stays behind
    holder.wait()
    assert holder_file_for(target).is_file()
    started = time.monotonic()
    with hold_lock(target, "test folder", wait=10):
        assert read_holder(target)["pid"] == os.getpid()  # the stale sidecar was replaced
    assert time.monotonic() - started < 2
    assert not holder_file_for(target).exists()


def test_two_prepares_of_one_dataset_never_write_it_together(tmp_path: Path, processes: list) -> None:
    """A second `prepare shapes` on the same root is refused (naming the first) or waits; never interleaves."""
    args = ["-m", "refine_cli", "prepare", "shapes", "--root", str(tmp_path), "--n", "12", "--size", "64"]
    first = spawn(args)
    processes.append(first)
    wait_for_holder(tmp_path / "shapes", first)
    first.send_signal(signal.SIGSTOP)  # frozen while holding the lock: the race window, made deterministic
    refused = CliRunner().invoke(app, args[2:], env={"REFINE_LOCK_WAIT": "0"})
    line = _one_line(refused)
    assert f"dataset folder {tmp_path / 'shapes'} is in use by pid {first.pid}" in line and "prepare shapes" in line
    waiting = spawn([*args[:-4], "--n", "6", "--size", "64"], REFINE_LOCK_WAIT="60")
    processes.append(waiting)
    time.sleep(0.5)
    first.send_signal(signal.SIGCONT)
    assert first.wait(60) == 0, first.communicate()[0]
    assert waiting.wait(60) == 0, waiting.communicate()[0]  # it waited, then wrote its own complete dataset
    dataset = UnifiedDataset(tmp_path / "shapes")
    assert len(dataset.split_ids("train")) + len(dataset.split_ids("val")) == 6
    check = CliRunner().invoke(app, ["check", str(tmp_path / "shapes")])
    assert check.exit_code == 0 and "is a valid unified dataset" in " ".join(check.output.split()), check.output


def test_a_killed_prepare_does_not_block_the_next(tmp_path: Path, processes: list) -> None:
    args = ["prepare", "shapes", "--root", str(tmp_path), "--n", "12", "--size", "64"]
    first = spawn(["-m", "refine_cli", *args])
    processes.append(first)
    wait_for_holder(tmp_path / "shapes", first)
    first.kill()
    first.wait()
    again = CliRunner().invoke(app, args, env={"REFINE_LOCK_WAIT": "0"})
    assert again.exit_code == 0, again.output


@pytest.mark.slow  # two processes that import torch: ~6 s idle, ~25 s on a loaded machine
def test_second_train_on_a_busy_run_folder_is_refused(tmp_path: Path, processes: list) -> None:
    """While `train --out X` or `train --resume X` runs, a second --out X or --resume X is refused, naming it."""
    from refine_cli.models.checkpoint import load_checkpoint
    from tests.support.tiny_seg import make_tiny_dataset

    data = make_tiny_dataset(tmp_path, train=4, val=1, size=(32, 32))
    run = tmp_path / "run"
    fast = ["--model", "lw-refinenet-mobilenetv2", "--crop", "32", "--batch", "2", "--workers", "0", "--device", "cpu"]
    fast += ["--set", "data.min_short_side=null", "--iters", "1000", "--val-every", "1"]
    env = {"REFINE_LOCK_WAIT": "0"}
    first = spawn(["-m", "refine_cli", "train", "--data", str(data), "--out", str(run), *fast])
    processes.append(first)
    wait_for_holder(run, first)
    deadline = time.monotonic() + 120
    while not (run / "last.pt").is_file() and time.monotonic() < deadline:  # its first checkpoint
        assert first.poll() is None, first.communicate()[0]
        time.sleep(0.01)
    first.send_signal(signal.SIGSTOP)
    for args in (["--data", str(data), "--out", str(run), *fast], ["--resume", str(run)]):
        line = _one_line(CliRunner().invoke(app, ["train", *args], env=env))
        assert f"training run {run} is in use by pid {first.pid}" in line and f"train --data {data}" in line
    first.kill()  # dies mid-run: the lock goes with it, last.pt stays a complete checkpoint
    first.wait()
    assert load_checkpoint(run / "last.pt").extra["resume"]["step"] >= 1
    second = spawn(["-m", "refine_cli", "train", "--resume", str(run)])
    processes.append(second)
    wait_for_holder(run, second)
    second.send_signal(signal.SIGSTOP)
    line = _one_line(CliRunner().invoke(app, ["train", "--resume", str(run)], env=env))
    assert f"is in use by pid {second.pid}" in line and f"train --resume {run}" in line


@pytest.mark.parametrize("value", ["soon", "nan"])
def test_a_lock_wait_that_is_no_number_is_one_line(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    from refine_cli.locks import default_wait

    monkeypatch.setenv("REFINE_LOCK_WAIT", value)  # nan: filelock would wait for ever, silently
    with pytest.raises(RefineError, match="is not a number of seconds"):
        default_wait()
    monkeypatch.setenv("REFINE_LOCK_WAIT", "-1")
    assert default_wait() == -1.0


def test_dataset_readers_wait_for_a_prepare_of_that_folder(tmp_path: Path, processes: list) -> None:
    """check, eval --data and train --data never read a folder a prepare is writing: refused naming it, or wait."""
    args = ["-m", "refine_cli", "prepare", "shapes", "--root", str(tmp_path), "--n", "12", "--size", "64"]
    data = tmp_path / "shapes"
    prepare = spawn(args)
    processes.append(prepare)
    wait_for_holder(data, prepare)
    prepare.send_signal(signal.SIGSTOP)  # frozen mid-conversion: the folder is half-written
    readers = [
        ["check", str(data)],
        ["eval", "--data", str(data), "--pred", str(tmp_path / "pred")],
        ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--iters", "1"],
    ]
    for reader in readers:
        line = _one_line(CliRunner().invoke(app, reader, env={"REFINE_LOCK_WAIT": "0.2"}))
        assert f"dataset folder {data} is in use by pid {prepare.pid} on " in line and "prepare shapes" in line, line
    assert not (tmp_path / "run").exists()
    threading.Timer(0.5, prepare.send_signal, [signal.SIGCONT]).start()
    started = time.monotonic()
    check = CliRunner().invoke(app, ["check", str(data)], env={"REFINE_LOCK_WAIT": "60"})
    assert time.monotonic() - started > 0.4  # it waited for the prepare to finish, then read the whole dataset
    assert check.exit_code == 0 and "is a valid unified dataset" in " ".join(check.output.split()), check.output
    assert prepare.wait(60) == 0, prepare.communicate()[0]


def test_dataset_readers_do_not_hold_each_other_up(tmp_path: Path, processes: list) -> None:
    """A long eval holding a dataset open leaves it free for a second reader and for the next prepare."""
    from tests.support.tiny_seg import make_tiny_dataset

    data = make_tiny_dataset(tmp_path, train=2, val=1, size=(32, 32))
    with hold_lock(data, "dataset folder"):  # leaves the lock file a finished prepare leaves
        pass
    opened = (
        "import sys, time\nfrom refine_cli.data.format.unified import UnifiedDataset\nUnifiedDataset(sys.argv[1])\n"
    )
    reader = spawn(["-c", opened + "print('open', flush=True)\ntime.sleep(60)\n", str(data)])
    processes.append(reader)
    assert reader.stdout.readline().strip() == "open", reader.communicate()[0]
    check = CliRunner().invoke(app, ["check", str(data)], env={"REFINE_LOCK_WAIT": "0"})
    assert check.exit_code == 0, check.output
    with hold_lock(data, "dataset folder", wait=0):
        pass
    failures: list[BaseException] = []

    def read_often() -> None:  # two readers probing at once: each may find the other's probe holding the lock
        try:
            for _ in range(200):
                wait_for_writer(data, "dataset folder", wait=0)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)

    threads = [threading.Thread(target=read_often) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures


def test_a_dataset_on_a_read_only_disk_is_read_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening a lock file read-write on a read-only mount fails with EROFS (an OSError, not a PermissionError)."""
    import errno

    import filelock

    from tests.support.tiny_seg import make_tiny_dataset

    data = make_tiny_dataset(tmp_path, train=2, val=1, size=(32, 32))
    with hold_lock(data, "dataset folder"):  # the lock file a finished prepare leaves beside the folder
        pass

    class ReadOnlyDisk(filelock.FileLock):
        def acquire(self, *args: object, **kwargs: object) -> None:  # what filelock raises on a read-only mount
            raise OSError(errno.EROFS, "Read-only file system", str(self.lock_file))

    monkeypatch.setattr(filelock, "FileLock", ReadOnlyDisk)
    wait_for_writer(data, "dataset folder", wait=0)
    check = CliRunner().invoke(app, ["check", str(data)], env={"REFINE_LOCK_WAIT": "0"})
    assert check.exit_code == 0, check.output


def test_two_own_datasets_under_one_root_do_not_wait_for_each_other(tmp_path: Path, processes: list) -> None:
    """`prepare custom a` running holds `<root>/a` only: `prepare custom b` beside it goes on; a second `a` waits."""
    from tests.support import custom_exports as ex

    export = tmp_path / "export"
    ex.folder_export(export, n=3)
    classes = tmp_path / "classes.txt"
    classes.write_text("background\ncat\ndog\n")
    root = tmp_path / "data"

    def args(name: str) -> list[str]:
        return ["prepare", "custom", name, "--from", str(export), "--classes", str(classes), "--root", str(root)]

    first = spawn(["-m", "refine_cli", *args("a"), "-j", "1"])
    processes.append(first)
    wait_for_holder(root / "a", first)
    first.send_signal(signal.SIGSTOP)
    beside = CliRunner().invoke(app, args("b"), env={"REFINE_LOCK_WAIT": "0.2"})
    assert beside.exit_code == 0 and (root / "b" / "meta.json").is_file(), beside.output
    again = _one_line(CliRunner().invoke(app, args("a"), env={"REFINE_LOCK_WAIT": "0.2"}))
    assert f"dataset folder {root / 'a'} is in use by pid {first.pid}" in again, again
    first.send_signal(signal.SIGCONT)
    assert first.wait(60) == 0, first.communicate()[0]
