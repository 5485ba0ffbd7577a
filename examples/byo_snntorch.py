"""Bring your SNN: an snnTorch network, trained here on digits, exported with snnTorch's own NIR
export, imported by snnexit as snnTorch means the nodes, with a certified exit and the runtime that
stops each input early. Run: .venv/bin/python examples/byo_snntorch.py [--out FILE.json]"""
import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

import nir
import snntorch as snn
from snntorch import utils as snn_utils
import torch
from snntorch.export_nir import export_to_nir

from snnexit.data import load_dataset
from snnexit.nir import import_nir
from snnexit.runs.evaluation import certified_exit
from snnexit.runs.imported import calibrate_traces
from snnexit.runtime import ChunkedEngine, EarlyExitEngine
from snnexit.simulate import record_trace

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default=None, help="also write the numbers to this JSON file")
parser.add_argument("--nir", default=None, help="where the NIR file goes (default: a temporary folder)")
args = parser.parse_args()
warnings.filterwarnings("ignore", category=DeprecationWarning)  # nirtorch's own notices
T = 16
data = load_dataset("digits", seed=0)  # sklearn's 8x8 digits, flattened to 64 inputs for an MLP
flat = {name: (split.x.flatten(1), split.y) for name, split in (("train", data.train), ("val", data.val),
                                                                  ("test", data.test))}
torch.manual_seed(0)


def leaky(n):  # snnTorch 1.0.0 exports per-neuron beta / threshold tensors; reset to zero is what NIR's LIF says
    return snn.Leaky(beta=torch.full((n,), 0.9), threshold=torch.full((n,), 1.0), init_hidden=True,
                     reset_mechanism="zero", reset_delay=False)


# 1. snnTorch: train with backpropagation through time; the score of a class is its spike count
net = torch.nn.Sequential(torch.nn.Linear(64, 128), leaky(128), torch.nn.Linear(128, 10), leaky(10))
optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
x_train, y_train = flat["train"]
for epoch in range(20):
    for i in torch.randperm(len(y_train)).split(64):
        snn_utils.reset(net)
        counts = sum(net(x_train[i]) for _ in range(T))
        loss = torch.nn.functional.cross_entropy(counts, y_train[i])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

# 2. snnTorch writes the network to NIR; snnexit reads it as snnTorch means the nodes
path = args.nir or str(Path(tempfile.mkdtemp()) / "snntorch_digits.nir")
nir.write(path, export_to_nir(net, x_train[:4], ignore_dims=[0]))
imported = import_nir(path, semantics="snntorch")
val = record_trace(imported, [flat["val"]], T=T)
test = record_trace(imported, [flat["test"]], T=T)
with torch.no_grad():  # the same network in snnTorch itself, step by step
    snn_utils.reset(net)
    theirs = torch.stack([net(flat["test"][0]) for _ in range(T)]).cumsum(0)
difference = float((theirs - test.outputs).abs().max())

# 3. a certified exit: half of validation learns the scores and the temperature, the other half certifies
calibrate_traces(imported, val, test)  # Dynamic Confidence's T_cal, fitted on the network's own outputs
cert = certified_exit(val)
row = cert.evaluate(test)

# 4. the runtime stops each input when the certified rule says so (step and chunked engines)
step = EarlyExitEngine(imported, cert.policy, T=T).run(flat["test"][0])
chunked = ChunkedEngine(imported, cert.policy, T=T, exit_steps=cert.policy.exit_steps(val)).run(flat["test"][0])
same = all(torch.equal(r.exit_steps, cert.policy.exit_steps(test)) for r in (step, chunked))
accuracy = (step.predictions == flat["test"][1]).double().mean().item()
numbers = {
    "command": "python examples/byo_snntorch.py " + " ".join(sys.argv[1:]), "T": T, "test_inputs": test.N, "snntorch_vs_snnexit_max_output_difference": difference,
    "fixed_T_test_accuracy": float(test.accuracy_per_step()[-1]),
    "certified": {k: row[k] for k in ("policy", "eps", "delta", "calibration_size", "learn_size", "threshold",
                                      "test_disagreement", "holds_on_test", "mean_steps", "saving", "test_acc")},
    "runtime": {"engines_take_the_offline_decisions": same, "test_accuracy": accuracy,
                "mean_steps": step.exit_steps.double().mean().item(),
                "spikes_per_neuron": step.cost.spikes_per_neuron().mean().item(),
                "fixed_T_spikes_per_neuron": float(test.spikes.sum((0, 2)).mean() / sum(test.meta["neurons_per_layer"]))},
}
print(f"snnTorch and snnexit outputs on {test.N} test inputs differ by at most {difference:g} over {T} steps")
print(f"fixed T = {T}: test accuracy {numbers['fixed_T_test_accuracy']:.4f}")
print(f"certified exit ({row['policy']}): differs from fixed T on <= {100 * row['eps']:.2f}% of new inputs (95%); "
      f"on test {100 * row['test_disagreement']:.2f}%, accuracy {row['test_acc']:.4f}, {row['mean_steps']:.2f} mean "
      f"steps ({100 * row['saving']:.1f}% saved)")
print(f"runtime: both engines take the offline decisions: {same}; test accuracy {accuracy:.4f}, "
      f"{numbers['runtime']['mean_steps']:.2f} mean steps, {numbers['runtime']['spikes_per_neuron']:.3f} spikes per "
      f"neuron (fixed T: {numbers['runtime']['fixed_T_spikes_per_neuron']:.3f})")
if args.out:
    with open(args.out, "w") as f:
        json.dump(numbers, f, indent=2)
