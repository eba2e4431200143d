"""The ``file`` observer against real files in a temp dir (README "Observers")."""

from __future__ import annotations

import os
import time

import pytest

from rsgo.observers.base import ObserverError, Reading
from rsgo.observers.file import MAX_BYTES, SETTLED_NS, FileObserver
from support import wait_until


def observe(path, **settings):
    return FileObserver({"path": str(path), "mode": "exists", "contentPattern": None} | settings)


def test_exists_mode_reads_true_when_the_file_is_there_and_false_when_it_is_not(tmp_path):
    flag = tmp_path / "maintenance.flag"
    observer = observe(flag)
    assert observer.check() == Reading("false")
    flag.write_text("")
    assert observer.check() == Reading("true")
    flag.unlink()
    assert observer.check() == Reading("false")


def test_exists_mode_with_a_file_where_a_directory_should_be_reads_false(tmp_path):
    (tmp_path / "plain").write_text("x")
    assert observe(tmp_path / "plain" / "flag").check() == Reading("false")


def test_content_mode_reads_the_content_as_written(tmp_path):
    flag = tmp_path / "mode"
    flag.write_text("  Maintenance\n")
    # Trimming and case are the decision's job; the observer hands over what the file says, stripped.
    assert observe(flag, mode="content").check() == Reading("Maintenance")


def test_content_mode_drops_a_utf8_byte_order_mark(tmp_path):
    flag = tmp_path / "mode"
    flag.write_bytes("\ufeff1\r\n".encode())
    assert observe(flag, mode="content").check() == Reading("1")


def test_content_mode_with_a_missing_file_reads_nothing(tmp_path):
    assert observe(tmp_path / "absent", mode="content").check() == Reading(None)


def test_content_pattern_with_a_group_reads_the_first_group(tmp_path):
    flag = tmp_path / "status.ini"
    flag.write_text("[app]\nversion=4.2\nmaintenance = on\n")
    observer = observe(flag, mode="content", contentPattern=r"maintenance\s*=\s*(\w+)")
    assert observer.check() == Reading("on")


def test_content_pattern_without_a_group_reads_the_whole_match(tmp_path):
    flag = tmp_path / "status.txt"
    flag.write_text("state: MAINTENANCE since 10:00\n")
    assert observe(flag, mode="content", contentPattern=r"MAINT\w+").check() == Reading("MAINTENANCE")


def test_content_pattern_without_a_match_reads_nothing(tmp_path):
    flag = tmp_path / "status.txt"
    flag.write_text("state: running\n")
    assert observe(flag, mode="content", contentPattern=r"maintenance=(\w+)").check() == Reading(None)


def test_a_directory_in_content_mode_is_an_error_naming_the_path(tmp_path):
    # A directory instead of a readable file: chmod 000 would not do, the tests run as root,
    # and root reads any file whatever its mode bits.
    directory = tmp_path / "flag-dir"
    directory.mkdir()
    with pytest.raises(ObserverError) as error:
        observe(directory, mode="content").check()
    assert str(directory) in str(error.value)
    assert "directory" in str(error.value).lower()


def test_a_file_that_is_not_utf8_is_an_error_naming_the_path(tmp_path):
    flag = tmp_path / "binary"
    flag.write_bytes(b"mode=\xff\xfe\x00")
    with pytest.raises(ObserverError, match="not UTF-8") as error:
        observe(flag, mode="content").check()
    assert str(flag) in str(error.value)


def test_a_file_larger_than_the_cap_is_an_error(tmp_path):
    flag = tmp_path / "huge.log"
    flag.write_bytes(b"x" * (MAX_BYTES + 1))
    with pytest.raises(ObserverError, match="larger than 1 MiB"):
        observe(flag, mode="content").check()
    flag.write_bytes(b"x" * MAX_BYTES)
    assert observe(flag, mode="content").check() == Reading("x" * MAX_BYTES)


def test_an_invalid_regex_is_an_error_at_construction(tmp_path):
    with pytest.raises(ObserverError, match="contentPattern .* not a valid regex"):
        observe(tmp_path / "flag", mode="content", contentPattern="maintenance=(\\w+")
    assert any("not a valid regex" in problem for problem in
               FileObserver.validate({"path": "/x", "mode": "content", "contentPattern": "("}))


def test_a_pattern_in_exists_mode_is_a_config_problem():
    assert FileObserver.validate({"path": "/x", "mode": "exists", "contentPattern": "on"}) == [
        "contentPattern applies only to mode: content"]
    assert FileObserver.validate({"path": "/x", "mode": "content", "contentPattern": "on"}) == []


def test_target_names_the_path_and_mode(tmp_path):
    assert observe(tmp_path / "f").target() == f"{tmp_path / 'f'} (exists)"
    assert observe(tmp_path / "f", mode="content", contentPattern="m=(\\w+)").target() == \
        f"{tmp_path / 'f'} (content ~ /m=(\\w+)/)"


def _settle(path) -> None:
    """Wait until the file's last change is older than SETTLED_NS: from then on its reading is kept."""
    wait_until(lambda: time.time_ns() - path.stat().st_ctime_ns > SETTLED_NS, 10, interval=0.1,
               message="the file to settle")


def test_content_mode_sees_a_rewrite_of_the_same_size_even_with_its_mtime_put_back(tmp_path):
    flag = tmp_path / "mode"
    flag.write_text("0")
    observer = observe(flag, mode="content")
    _settle(flag)
    assert observer.check() == Reading("0")  # kept: the file is settled
    stat = flag.stat()
    flag.write_text("1")  # same size
    os.utime(flag, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the same mtime: only the change time tells
    assert observer.check() == Reading("1")


def test_content_mode_sees_a_settled_file_replaced_by_another_and_removed(tmp_path):
    flag, other = tmp_path / "mode", tmp_path / "next"
    flag.write_text("0")
    other.write_text("1")
    _settle(other)
    observer = observe(flag, mode="content")
    assert observer.check() == Reading("0")
    assert observer.check() == Reading("0")
    os.replace(other, flag)  # a new inode under the same name, settled (rename changes no content)
    assert observer.check() == Reading("1")
    flag.unlink()
    assert observer.check() == Reading(None)
