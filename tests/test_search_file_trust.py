"""Search files are code: greentune calls only what is marked as a factory, and refuses YAML anchors and huge files.

An import path runs its module as a Python script would; what it names is
called only if it is a Task or model class, a ``@greentune.registry.factory``
or a function annotated ``-> Task`` / ``-> nn.Module``.
"""

from __future__ import annotations

import time

import pytest
from torch import nn

from greentune.registry import factory, is_marked_factory
from greentune.search.config import MAX_SEARCH_FILE_BYTES
from greentune.trainables.tasks import Task

from helpers import assert_one_line_usage_error, in_process

ALIAS_BOMB = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},"
       f"*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]" for i in range(8)]
)


def test_os_system_named_as_the_task_is_refused_in_one_line_without_running(tmp_path, capsys):
    marker = tmp_path / "ran"
    path = tmp_path / "search.yaml"
    path.write_text(f"task: os:system\ntask_options: {{command: 'touch {marker}'}}\napproaches: {{b: {{}}}}\n")
    assert_one_line_usage_error(in_process(capsys, "validate", path), "task 'os:system' is system, which greentune will not call")
    assert not marker.exists()


def test_an_alias_bomb_is_one_line_in_under_a_second(tmp_path, capsys):
    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB)
    assert len(ALIAS_BOMB) < 1000
    started = time.monotonic()
    result = in_process(capsys, "validate", path)
    assert time.monotonic() - started < 1
    assert_one_line_usage_error(result, "uses a YAML anchor or alias at line 1, column 4")


def test_an_alias_alone_is_refused_too(tmp_path, capsys):
    path = tmp_path / "search.yaml"
    path.write_text("task: teacher_student\ntrain: &t {steps: 20}\napproaches: {b: {train: *t}}\n")
    assert_one_line_usage_error(in_process(capsys, "validate", path), "uses a YAML anchor or alias at line 2")


def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed(tmp_path, capsys):
    path = tmp_path / "huge.yaml"
    path.write_text("task: [" * (MAX_SEARCH_FILE_BYTES // 6))  # would nest too deeply, were it parsed
    assert_one_line_usage_error(in_process(capsys, "validate", path), f"more than a search file's {MAX_SEARCH_FILE_BYTES}")


def annotated() -> Task: ...


def annotated_model(width: int = 3) -> nn.Module: ...


@factory
def decorated(): ...


def plain(): ...


@pytest.mark.parametrize(
    "candidate, builds, marked",
    [
        (annotated, Task, True), (annotated, nn.Module, False), (annotated_model, nn.Module, True),
        (decorated, Task, True), (plain, Task, False), (nn.Linear, nn.Module, True), (Task, Task, True),
        (print, Task, False), (__import__("os").system, Task, False),
    ],
)
def test_what_counts_as_a_marked_factory(candidate, builds, marked):
    assert is_marked_factory(candidate, builds) is marked
