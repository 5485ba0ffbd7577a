import pytest
import torch

from snnexit.data import load_dataset
from snnexit.errors import SnnexitError
from snnexit.models import create_model
from snnexit.quant import QCFS
from snnexit.train import TrainConfig, load_checkpoint, train
from snnexit.train import loop as train_loop


def small_model():
    torch.manual_seed(0)
    return create_model("vgg_small", num_classes=10, in_channels=1, input_size=8,
                        activation=lambda: QCFS(4, 1.0), width=8)


def test_resume_after_interruption_equals_uninterrupted(tmp_path, monkeypatch):
    data = load_dataset("digits", seed=0)
    config = TrainConfig(epochs=3, batch_size=64, seed=1)
    reference = train(small_model(), data.train, config, checkpoint=tmp_path / "a.pt", progress=False)

    real_save = train_loop.save_checkpoint
    saves = []

    def crash_after_second_epoch(path, state):
        real_save(path, state)
        saves.append(state["epoch"])
        if state["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_loop, "save_checkpoint", crash_after_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(small_model(), data.train, config, checkpoint=tmp_path / "b.pt", progress=False)
    monkeypatch.setattr(train_loop, "save_checkpoint", real_save)
    assert load_checkpoint(tmp_path / "b.pt")["epoch"] == 2
    resumed = train(small_model(), data.train, config, checkpoint=tmp_path / "b.pt", progress=False)
    for (k, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_corrupt_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SnnexitError, match="cannot load checkpoint"):
        load_checkpoint(bad)


def test_checkpoint_with_code_payload_is_refused(tmp_path):
    import pickle

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"format": "snnexit-train", "x": Payload()}))
    with pytest.raises(SnnexitError, match="cannot load checkpoint"):
        load_checkpoint(evil)
