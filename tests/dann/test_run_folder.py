"""check_out: the output folder is created and proved writable, also by many processes at once."""

import os
import threading

import pytest

from backflip._testing import require_backend

require_backend("torch")

from backflip import BackflipValueError  # noqa: E402
from backflip.dann import check_out  # noqa: E402


def test_concurrent_checks_of_one_folder_all_pass(tmp_path):
    """Every torchrun process checks the same --out at once (a shared probe file raced)."""
    path, errors = tmp_path / "run", []

    def check():
        for _ in range(300):
            try:
                check_out(path)
            except BackflipValueError as err:
                errors.append(err)

    threads = [threading.Thread(target=check) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert os.listdir(path) == []  # no probe left behind


def test_a_folder_that_cannot_be_written_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BackflipValueError, match=r"output folder .*file/run.* is not writable"):
        check_out(blocker / "run")
