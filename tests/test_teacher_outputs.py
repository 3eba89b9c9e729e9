"""Teacher outputs computed once per search and snapshot, shared through Ray's object store."""

import numpy as np
import pytest
import ray
import torch

from mmkd.config import TrialConfig
from mmkd.methods import METHODS, build_method, method_class
from mmkd.nets import build_teacher
from mmkd.teachers import TeacherOutputs, build_from_record, snapshot_epoch, teacher_outputs
from search.space import load_space
from search.workers import fetch_teacher_outputs, share_teacher_outputs, teacher_snapshots

TEACHERS = ("sig", "gaf")
WINDOWS, CHANNELS, LENGTH, IMAGE, CLASSES, EPOCHS = 40, 3, 24, 16, 3, 4
# 30 training windows: their outputs (about 170 KiB) go to the shared object store; Ray
# returns objects under 100 KiB inline instead, copied into each reader's heap.
TRAIN = np.array([window for window in range(WINDOWS) if window % 4])
FIELDS = ("logits", "features", "feature_map", "classifier_weight")


def _record(modality: str) -> dict:
    """A teacher record as `mmkd.teachers` stores it: different weights per snapshot."""

    def weights(seed):
        torch.manual_seed(seed)
        return build_teacher(modality, CHANNELS, CLASSES, 10, 1).state_dict()

    epochs = {snapshot_epoch(EPOCHS, share) for share in (0.25, 0.5, 0.75)}
    return {
        "spec": {"modality": modality, "depth": 10, "width": 1, "epochs": EPOCHS},
        "state": weights(0),
        "snapshots": {str(epoch): weights(epoch) for epoch in sorted(epochs)},
        "in_channels": CHANNELS,
        "num_classes": CLASSES,
    }


@pytest.fixture(scope="module")
def problem():
    generator = np.random.default_rng(0)
    arrays = {
        "sig": generator.standard_normal((WINDOWS, CHANNELS, LENGTH)).astype(np.float16),
        "gaf": generator.uniform(-1, 1, (WINDOWS, CHANNELS, IMAGE, IMAGE)).astype(np.float16),
    }
    labels = np.arange(WINDOWS) % CLASSES
    return arrays, labels, {name: _record(name) for name in TEACHERS}


@pytest.fixture(scope="module")
def shared(ray_runtime, problem):
    """The `SharedTeacherOutputs` actor of a space choosing between snapshots 0.25 and 1.0."""
    arrays, _, records = problem
    space = {"snapshot": {"type": "categorical", "choices": [0.25, 1.0]}}
    arrays_ref = ray_runtime.put(arrays)
    return share_teacher_outputs(records, arrays_ref, TRAIN, TEACHERS, space)


def _reference(shared, snapshot):
    return ray.get(shared.reference.remote(snapshot))


def _direct(records, arrays, snapshot):
    """The outputs computed here directly, with one thread like the shared task."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {
            name: teacher_outputs(
                build_from_record(records[name], snapshot), torch.from_numpy(arrays[name][TRAIN])
            )
            for name in TEACHERS
        }
    finally:
        torch.set_num_threads(threads)


def test_snapshots_come_from_the_space():
    assert teacher_snapshots(load_space("eskd", None, None, [])) == (0.25, 0.5, 0.75, 1.0)
    assert teacher_snapshots(load_space("eskd", None, None, ["snapshot=0.5"])) == (0.5,)
    assert teacher_snapshots(load_space("aver", None, None, [])) == (1.0,)


def test_shared_outputs_equal_a_direct_teacher_pass(shared, problem):
    arrays, _, records = problem

    for snapshot in (0.25, 1.0):
        fetched = fetch_teacher_outputs(shared, snapshot)
        direct = _direct(records, arrays, snapshot)
        assert sorted(fetched) == sorted(TEACHERS)
        for name in TEACHERS:
            for field in FIELDS:
                value = getattr(fetched[name], field)
                assert value.dtype == torch.float32
                assert torch.equal(value, getattr(direct[name], field)), (snapshot, name, field)
        assert fetched["sig"].logits.shape == (len(TRAIN), CLASSES)
        assert fetched["gaf"].feature_map.shape[0] == len(TRAIN)

    # The snapshots are different teachers, not one pass shared under two names.
    early, best = (fetch_teacher_outputs(shared, s) for s in (0.25, 1.0))
    assert not torch.equal(early["gaf"].logits, best["gaf"].logits)


def test_each_snapshot_is_computed_once_and_others_are_refused(shared):
    assert _reference(shared, 1.0).hex() == _reference(shared, 1.0).hex()
    assert _reference(shared, 0.25).hex() != _reference(shared, 1.0).hex()

    with pytest.raises(ValueError, match=r"snapshot 0\.5 is not among .*\(0\.25, 1\.0\)"):
        _reference(shared, 0.5)


def test_fetched_outputs_map_the_object_store_without_copying(ray_runtime, shared):
    arrays = ray_runtime.get(_reference(shared, 1.0))["gaf"]
    assert all(not array.flags.writeable for array in arrays.values())

    # Two fetches in one process see the same pages: neither is a copy.
    first, second = (fetch_teacher_outputs(shared, 1.0) for _ in range(2))
    for field in FIELDS:
        a, b = getattr(first["gaf"], field), getattr(second["gaf"], field)
        assert a.data_ptr() == b.data_ptr()
        assert a.data_ptr() == arrays[field].ctypes.data


def test_a_worker_maps_the_outputs_from_the_object_store(ray_runtime, shared):
    @ray_runtime.remote(num_cpus=0)
    def look_up(shared):
        """In a worker process: which file of its mappings holds the fetched feature map?"""
        from search.workers import fetch_teacher_outputs

        feature_map = fetch_teacher_outputs(shared, 0.25)["gaf"].feature_map
        address, mapped = feature_map.data_ptr(), ""
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.split()
                low, high = (int(bound, 16) for bound in parts[0].split("-"))
                if low <= address < high and len(parts) > 5:
                    mapped = parts[5]
        return mapped, float(feature_map.sum())

    mapped, total = ray_runtime.get(look_up.remote(shared))
    assert "plasma" in mapped
    assert total == float(fetch_teacher_outputs(shared, 0.25)["gaf"].feature_map.sum())


@pytest.mark.parametrize(
    "method", sorted(name for name in METHODS if method_class(name).uses_teachers)
)
def test_targets_from_shared_outputs_equal_direct_ones_and_leave_them_intact(
    method, shared, problem
):
    arrays, labels, records = problem
    fetched = fetch_teacher_outputs(shared, 1.0)
    direct = _direct(records, arrays, 1.0)
    dims = {"student": 16, **{name: out.features.shape[1] for name, out in direct.items()}}
    torch.manual_seed(0)
    kind = build_method(method, TrialConfig(branches="sig+gaf"), TEACHERS, dims)
    train_labels = torch.from_numpy(labels[TRAIN]).long()

    targets = kind.teacher_targets(fetched, train_labels)
    expected = kind.teacher_targets(direct, train_labels)

    assert sorted(targets) == sorted(expected)
    for name, value in targets.items():
        assert torch.equal(value, expected[name]), name
    again = fetch_teacher_outputs(shared, 1.0)
    for name in TEACHERS:
        for field in FIELDS:
            assert torch.equal(getattr(again[name], field), getattr(direct[name], field))


def test_teacher_outputs_fields_are_what_the_task_ships():
    assert tuple(TeacherOutputs.__dataclass_fields__) == FIELDS
