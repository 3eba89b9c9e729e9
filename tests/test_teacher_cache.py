"""Cached teachers that cannot be read are trained again, with a warning, never trusted."""

import dataclasses
import logging

import pytest
import torch

from mmkd.teachers import load_teacher_record, save_teacher


def _record():
    return {
        "spec": {"modality": "sig", "epochs": 2},
        "state": {"w": torch.arange(6.0)},
        "snapshots": {},
        "best_val_acc": 0.5,
        "best_epoch": 1,
        "test_acc": 0.25,
        "in_channels": 6,
        "num_classes": 4,
    }


def test_a_saved_record_loads_back(tmp_path):
    path = tmp_path / "teachers" / "t.pt"
    save_teacher(_record(), path)
    record = load_teacher_record(path)
    assert record["spec"] == {"modality": "sig", "epochs": 2}
    assert torch.equal(record["state"]["w"], torch.arange(6.0))
    assert [p.name for p in path.parent.iterdir()] == ["t.pt"]


def test_a_truncated_record_is_dropped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "t.pt"
    save_teacher(_record(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])

    with caplog.at_level(logging.WARNING, logger="mmkd.teachers"):
        assert load_teacher_record(path) is None
    assert len(caplog.records) == 1
    assert str(path) in caplog.records[0].getMessage()
    assert "training it again" in caplog.records[0].getMessage()


def test_a_foreign_file_is_dropped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "t.pt"
    path.write_text("not a checkpoint\n")
    with caplog.at_level(logging.WARNING, logger="mmkd.teachers"):
        assert load_teacher_record(path) is None
    assert len(caplog.records) == 1


def test_a_record_with_pickled_code_is_refused_not_run(tmp_path, caplog):
    # Weights-only loading: a checkpoint that would run code on load is not trusted.
    path = tmp_path / "t.pt"
    torch.save({"spec": {}, "hook": logging.getLogger}, path)
    with caplog.at_level(logging.WARNING, logger="mmkd.teachers"):
        assert load_teacher_record(path) is None
    assert len(caplog.records) == 1


def test_a_readable_file_that_is_no_teacher_record_is_dropped_with_a_warning(tmp_path, caplog):
    incomplete = {key: value for key, value in _record().items() if key != "snapshots"}
    path = tmp_path / "t.pt"
    for content, named in (
        ({}, "best_epoch, best_val_acc"),
        ([1, 2], "best_epoch"),
        (incomplete, "no snapshots"),
    ):
        torch.save(content, path)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mmkd.teachers"):
            assert load_teacher_record(path) is None
        assert len(caplog.records) == 1
        assert named in caplog.records[0].getMessage()
        assert "is no teacher record" in caplog.records[0].getMessage()


def test_a_missing_record_is_none_without_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="mmkd.teachers"):
        assert load_teacher_record(tmp_path / "absent.pt") is None
    assert caplog.records == []


def test_another_teachers_record_is_dropped_and_a_folder_refused(tmp_path, caplog):
    from mmkd.data import DataError
    from mmkd.teachers import TeacherSpec

    spec = TeacherSpec("sig", "basicmotions", "0:stratified", 16, 1, 2, 0, "32")
    record = {**_record(), "spec": dataclasses.asdict(spec)}
    path = tmp_path / "t.pt"
    save_teacher(record, path)
    assert load_teacher_record(path, spec)["spec"] == dataclasses.asdict(spec)

    other = dataclasses.replace(spec, modality="gaf")
    with caplog.at_level(logging.WARNING, logger="mmkd.teachers"):
        assert load_teacher_record(path, other) is None
    assert [r.getMessage() for r in caplog.records] == [
        f"teacher cache {path} holds another teacher; training it again"
    ]

    folder = tmp_path / "folder.pt"
    folder.mkdir()
    with pytest.raises(DataError, match="a folder stands where this teacher's cache file"):
        load_teacher_record(folder, spec)
