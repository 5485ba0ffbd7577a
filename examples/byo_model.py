"""Bring your own PyTorch model: QCFS activations, train briefly on digits, convert to an SNN, fit
Dynamic Confidence, run with early exit. Run: python examples/byo_model.py"""
import torch
from torch import nn

from snnexit.calibrate import fit_temperature
from snnexit.convert import convert
from snnexit.data import load_dataset
from snnexit.exit import DynamicConfidence, FixedT
from snnexit.quant import QCFS
from snnexit.simulate import record_trace
from snnexit.runtime import EarlyExitEngine
from snnexit.train import TrainConfig, evaluate_logits, train

data = load_dataset("digits", seed=0)  # sklearn's 8x8 digits: train / val / test splits
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), QCFS(levels=4, init_threshold=1.0), nn.AvgPool2d(2),
                      nn.Flatten(), nn.Linear(16 * 4 * 4, 64), QCFS(4, 1.0), nn.Linear(64, 10))
train(model, data.train, TrainConfig(epochs=8), progress=False)  # or your own training loop
snn = convert(model, "qcfs")  # each QCFS activation becomes a soft-reset IF neuron
snn.meta["temperature"] = fit_temperature(evaluate_logits(model, data.val), data.val.y)
policy = DynamicConfidence().fit(record_trace(snn, data.val.batches(256), T=16))  # threshold from validation
for name, p in (("fixed T = 16", FixedT()), ("Dynamic Confidence", policy)):
    result = EarlyExitEngine(snn, p, T=16).run(data.test.x)  # each input stops as soon as p says so
    accuracy = (result.predictions == data.test.y).float().mean().item()
    print(f"{name}: test accuracy {accuracy:.4f}, mean steps {result.exit_steps.float().mean().item():.2f}")
