"""Traces: validation, persistence, refusal of corrupt and foreign files."""

import pytest
import torch

from snnexit.errors import SnnexitError
from snnexit.io import save_tensors
from snnexit.simulate.trace import Trace, concat


def test_round_trip(tmp_path, make_trace):
    tr = make_trace(meta={"alpha": "t", "temperature": 1.5, "converter": "qcfs"})
    tr.save(tmp_path / "t.safetensors")
    back = Trace.load(tmp_path / "t.safetensors")
    assert torch.equal(back.outputs, tr.outputs) and torch.equal(back.labels, tr.labels)
    assert torch.equal(back.spikes, tr.spikes) and back.meta == tr.meta


def test_truncated_file_is_refused(tmp_path, make_trace):
    path = tmp_path / "t.safetensors"
    make_trace().save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SnnexitError, match="corrupt or truncated"):
        Trace.load(path)


def test_flipped_byte_fails_checksum(tmp_path, make_trace):
    path = tmp_path / "t.safetensors"
    make_trace().save(path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(SnnexitError, match="checksum"):
        Trace.load(path)


def test_foreign_file_is_refused(tmp_path):
    save_tensors(tmp_path / "ann.safetensors", {"w": torch.ones(2)}, fmt="ann", version=1)
    with pytest.raises(SnnexitError, match="expected a snnexit trace file"):
        Trace.load(tmp_path / "ann.safetensors")
    (tmp_path / "junk").write_bytes(b"\x00" * 3)
    with pytest.raises(SnnexitError):
        Trace.load(tmp_path / "junk")
    with pytest.raises(SnnexitError, match="no such file"):
        Trace.load(tmp_path / "missing")


@pytest.mark.parametrize("outputs,labels,match", [
    (torch.zeros(3, 4), torch.zeros(4, dtype=torch.long), r"\(T, N, C\)"),
    (torch.zeros(3, 4, 2), torch.zeros(5, dtype=torch.long), "labels must have shape"),
    (torch.zeros(3, 4, 2), torch.full((4,), 2), r"labels must lie in \[0, 2\)"),
    (torch.full((3, 4, 2), float("nan")), torch.zeros(4, dtype=torch.long), "NaN"),
    (torch.zeros(3, 4, 2, dtype=torch.long), torch.zeros(4, dtype=torch.long), "floating point"),
    (torch.zeros(3, 4, 2), torch.zeros(4), "integers"),
    (torch.zeros(3, 0, 2), torch.zeros(0, dtype=torch.long), "N >= 1"),
])
def test_malformed_traces_raise_clear_errors(outputs, labels, match):
    with pytest.raises(SnnexitError, match=match):
        Trace(outputs, labels)


def test_concat_and_subset(make_trace):
    tr = make_trace(N=10)
    parts = [tr.subset(torch.arange(0, 4)), tr.subset(torch.arange(4, 10))]
    joined = concat(parts)
    assert torch.equal(joined.outputs, tr.outputs) and torch.equal(joined.spikes, tr.spikes)
    assert tr.truncate(2).T == 2
