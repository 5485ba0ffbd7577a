"""Running NIR graphs (snnexit.nir.graph, importer): recurrent edges against a hand-written loop,
chunks against single steps, state selection, subgraphs, and one-line refusals naming the node."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from snnexit.errors import SnnexitError
from snnexit.nir import SEMANTICS, import_nir
from snnexit.simulate import record_trace

H, IN, OUT = 6, 5, 3


def f32(*shape, scale=0.6, seed=0):
    return (np.random.default_rng(seed + sum(shape)).normal(size=shape) * scale).astype(np.float32)


def lif_node(tau=4e-3, threshold=0.5):
    return nir.LIF(tau=np.full(H, tau, np.float32), r=np.ones(H, np.float32), v_leak=np.zeros(H, np.float32),
                   v_threshold=np.full(H, threshold, np.float32), v_reset=np.zeros(H, np.float32))


def recurrent_graph(self_loop=False):
    nodes = {"in": nir.Input(input_type={"input": np.array([IN])}), "fc": nir.Affine(f32(H, IN), f32(H)),
             "lif": lif_node(), "out": nir.Affine(f32(OUT, H), f32(OUT)),
             "output": nir.Output(output_type={"output": np.array([OUT])})}
    edges = [("in", "fc"), ("fc", "lif"), ("lif", "out"), ("out", "output")]
    if self_loop:
        edges.append(("lif", "lif"))
    else:
        nodes["rec"] = nir.Affine(f32(H, H, seed=3), f32(H, seed=3))
        edges += [("lif", "rec"), ("rec", "lif")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def hand_loop(graph, x, T, dt, start):
    """The graph by hand, NIR's forward Euler: LIF input = fc(x_t) + what the loop carried from t - 1."""
    n = graph.nodes
    lin = lambda node, v: v @ node.weight.T + node.bias  # noqa: E731
    lif = n["lif"]
    v = np.zeros((x.shape[0], H), np.float32)
    carried = lin(n["rec"], np.zeros_like(v)) if start == "bias" and "rec" in n else np.zeros_like(v)
    outs = []
    for t in range(T):
        i = lin(n["fc"], x[:, t]) + carried
        v = v + ((lif.v_leak - v) + lif.r * i) / (lif.tau / np.float32(dt))
        s = (v > lif.v_threshold).astype(np.float32)
        v = np.where(s > 0, lif.v_reset, v)
        carried = lin(n["rec"], s) if "rec" in n else s
        outs.append(lin(n["out"], s))
    return np.cumsum(np.stack(outs), 0)


@pytest.mark.parametrize("self_loop", [False, True])
@pytest.mark.parametrize("semantics,start", [("nir", "zero"), ("snntorch_like", "bias")])
def test_recurrent_edges_carry_last_steps_output(self_loop, semantics, start):
    """A neuron fed back through an Affine (or to itself) gets, at step t, what the loop computed
    at t - 1; at the first step nothing ('zero', NIRTorch) or the feedback layer's bias ('bias',
    snnTorch's recurrent neurons)."""
    from dataclasses import replace

    graph = recurrent_graph(self_loop)
    sem = SEMANTICS.create("nir") if semantics == "nir" else replace(SEMANTICS.create("nir"), recurrent_start="bias")
    x = np.random.default_rng(0).uniform(0, 2, size=(7, 12, IN)).astype(np.float32)
    ours = record_trace(import_nir(graph, sem, dt=1e-3), [(torch.from_numpy(x), None)], T=12, temporal=True)
    expected = hand_loop(graph, x, 12, 1e-3, start)
    np.testing.assert_allclose(ours.outputs.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert ours.spikes.sum() > 0 and len(ours.meta["neurons_per_layer"]) == 1


def test_a_chunk_of_a_recurrent_graph_is_k_single_steps_and_select_keeps_the_loop():
    snn = import_nir(recurrent_graph(), "nir", dt=1e-3)
    x = torch.rand(9, 8, IN) * 2  # (N, T, ...)
    snn.reset()
    single = torch.stack([snn.step(x[:, t]) for t in range(8)])
    singles_spikes = None
    snn.reset()
    chunked = torch.cat([snn.step_chunk(x[:, t:t + 4].transpose(0, 1)) for t in (0, 4)])
    singles_spikes = snn.chunk_spike_counts()
    assert torch.equal(single, chunked) and singles_spikes.shape == (4, 9, 1)
    keep = torch.tensor([7, 2, 4])  # drop inputs after 3 steps, as the runtime does, then go on
    snn.reset()
    for t in range(3):
        snn.step(x[:, t])
    snn.select(keep)
    rest = torch.stack([snn.step(x[keep, t]) for t in range(3, 8)])
    assert torch.equal(rest, single[3:, keep])


def test_subgraphs_are_inlined():
    """snnTorch writes a recurrent layer as a subgraph: the same network either way."""
    flat = recurrent_graph()
    n = flat.nodes
    sub = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([H])}), "lif": n["lif"],
                              "w_rec": n["rec"], "output": nir.Output(output_type={"output": np.array([H])})},
                       edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")])
    nested = nir.NIRGraph(nodes={"in": n["in"], "fc": n["fc"], "1": sub, "out": n["out"], "output": n["output"]},
                          edges=[("in", "fc"), ("fc", "1"), ("1", "out"), ("out", "output")])
    x = torch.rand(4, IN) * 2
    a = record_trace(import_nir(flat, "nir", dt=1e-3), [(x, None)], T=6)
    b = record_trace(import_nir(nested, "nir", dt=1e-3), [(x, None)], T=6)
    assert torch.equal(a.outputs, b.outputs) and b.meta["layer_names"] == ["units.loop_0.ops.1_lif"]


def test_an_input_node_that_names_the_batch_is_read_without_it():
    """Norse (and snnTorch without ignore_dims) write the example batch into the input node's type."""
    graph = recurrent_graph()
    graph.nodes["in"] = nir.Input(input_type={"input": np.array([16, IN])})
    assert import_nir(graph, "nir", dt=1e-3).meta["input_shape"] == [IN]


def _graph_with(node, name="odd"):
    return nir.NIRGraph(nodes={"in": nir.Input(input_type={"input": np.array([H])}), "fc": nir.Affine(f32(H, H), f32(H)),
                               name: node, "out": nir.Affine(f32(OUT, H), f32(OUT)),
                               "output": nir.Output(output_type={"output": np.array([OUT])})},
                        edges=[("in", "fc"), ("fc", name), (name, "out"), ("out", "output")], type_check=False)


@pytest.mark.parametrize("node,semantics,message", [
    (nir.Delay(delay=np.ones(H, np.float32)), "nir", "NIR node 'odd' of type Delay cannot be run by snnexit"),
    (nir.Threshold(threshold=np.ones(H, np.float32)), "nir", "'odd' of type Threshold"),
    (nir.Affine(f32(H, H + 1), f32(H)), "nir", r"NIR node 'odd' \(Linear\) cannot take its input of shape \(1, 6\)"),
    (nir.LI(tau=np.ones(H, np.float32), r=np.ones(H, np.float32), v_leak=np.zeros(H, np.float32)), "snntorch",
     r"NIR node 'odd' \(LI\), read as snnTorch reads it .*has no LI neuron"),
    (nir.CubaLIF(tau_syn=np.ones(H, np.float32), tau_mem=np.ones(H, np.float32), r=np.ones(H, np.float32),
                 v_leak=np.zeros(H, np.float32), v_threshold=np.ones(H, np.float32)), "sinabs", "has no CubaLIF"),
    (nir.IF(r=np.full(H, 2.0, np.float32), v_threshold=np.ones(H, np.float32)), "snntorch", "only with r = 1"),
    (nir.IF(r=np.ones(H, np.float32), v_threshold=np.ones(H, np.float32)), "spikingjelly", r"r = 1 / dt = 10000"),
    (lif_node(), "nir", "semantics 'nir' has no default step: pass dt"),
    (lif_node(), "snnexit", "'odd' \\(LIF\\) was not exported by snnexit.*nir, norse, sinabs, snntorch, spikingjelly"),
])
def test_what_cannot_run_is_refused_naming_the_node(node, semantics, message):
    with pytest.raises(SnnexitError, match=message):
        import_nir(_graph_with(node), semantics)


def test_a_reader_without_recurrence_refuses_a_loop_and_bad_steps_are_refused():
    with pytest.raises(SnnexitError, match="'lif', 'rec' form a recurrent loop, which Sinabs reads it cannot run"):
        import_nir(recurrent_graph(), "sinabs")
    for dt in (0, -1.0, float("nan"), "1"):
        with pytest.raises(SnnexitError, match="dt must be a positive number"):
            import_nir(recurrent_graph(), "nir", dt=dt)
    graph = recurrent_graph()
    graph.edges.append(("fc", "ghost"))
    with pytest.raises(SnnexitError, match="names an unknown node"):
        import_nir(graph, "nir", dt=1.0)


def test_every_reader_is_registered():
    assert SEMANTICS.names() == ["nir", "norse", "sinabs", "snnexit", "snntorch", "spikingjelly"]
    with pytest.raises(SnnexitError, match="Unknown NIR semantics 'lava'. Known: nir, norse"):
        import_nir(recurrent_graph(), "lava")


def _chain(nodes: dict, in_shape) -> nir.NIRGraph:
    names = ["in", *nodes, "output"]
    graph_nodes = {"in": nir.Input(input_type={"input": np.array(in_shape)}), **nodes,
                   "output": nir.Output(output_type={"output": np.array([OUT])})}
    return nir.NIRGraph(nodes=graph_nodes, edges=list(zip(names, names[1:])), type_check=False)


def test_stateless_nodes_compute_what_torch_computes():
    """Conv1d, Conv2d (grouped, padded, strided), AvgPool2d with padding, SumPool2d, Flatten, Scale,
    Linear and Affine, against torch's functional ops written out by hand."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    x2 = torch.rand(3, 4, 9, 9, generator=g)
    w2, b2 = torch.randn(6, 2, 3, 3, generator=g), torch.randn(6, generator=g)
    scale = torch.rand(6, 5, 5, generator=g)
    wl = torch.randn(OUT, 6 * 2 * 2, generator=g)
    graph = _chain({"conv": nir.Conv2d(input_shape=(9, 9), weight=w2.numpy(), stride=2, padding=1, dilation=1,
                                       groups=2, bias=b2.numpy()),
                    "scale": nir.Scale(scale=scale.numpy()),
                    "avg": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([1, 1])),
                    "sum": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([1, 1]), padding=np.array([0, 0])),
                    "flat": nir.Flatten(input_type={"input": np.array([6, 2, 2])}, start_dim=0, end_dim=-1),
                    "fc": nir.Linear(weight=wl.numpy())}, [4, 9, 9])
    by_hand = F.conv2d(x2, w2, b2, stride=2, padding=1, groups=2) * scale
    by_hand = F.avg_pool2d(F.avg_pool2d(by_hand, 2, 2, 1), 2, 1) * 4
    by_hand = by_hand.flatten(1) @ wl.T
    assert torch.allclose(import_nir(graph, "nir").step(x2), by_hand, atol=1e-5)
    x1 = torch.rand(3, 2, 12, generator=g)
    w1, b1, wa, ba = (torch.randn(4, 2, 5, generator=g), torch.randn(4, generator=g),
                      torch.randn(OUT, 4 * 4, generator=g), torch.randn(OUT, generator=g))
    graph = _chain({"conv": nir.Conv1d(input_shape=12, weight=w1.numpy(), stride=2, padding=0, dilation=1, groups=1,
                                       bias=b1.numpy()),
                    "flat": nir.Flatten(input_type={"input": np.array([4, 4])}, start_dim=0, end_dim=-1),
                    "fc": nir.Affine(weight=wa.numpy(), bias=ba.numpy())}, [2, 12])
    expected = F.conv1d(x1, w1, b1, stride=2).flatten(1) @ wa.T + ba
    assert torch.allclose(import_nir(graph, "nir").step(x1), expected, atol=1e-5)


def test_integrators_by_hand():
    """NIR's I (v += dt r x) and LI (forward Euler towards v_leak), output their potential."""
    dt, tau, r, leak = 0.5, 2.0, 1.5, 0.25
    x = torch.rand(2, OUT)
    for node, update in ((nir.I(r=np.full(OUT, r, np.float32)), lambda v: v + dt * r * x),
                         (nir.LI(tau=np.full(OUT, tau, np.float32), r=np.full(OUT, r, np.float32),
                                 v_leak=np.full(OUT, leak, np.float32)), lambda v: v + (leak - v + r * x) * dt / tau)):
        net = import_nir(_chain({"n": node}, [OUT]), "nir", dt=dt)
        v = torch.zeros(2, OUT)
        for _ in range(5):
            v = update(v)
            assert torch.allclose(net.step(x), v, atol=1e-6)


def test_fan_out_counts_the_recurrent_connections():
    """SynOps of an imported recurrent network: a spike of the loop's layer reaches the output
    layer's neurons and, through the loop, the layer itself."""
    from snnexit.simulate.cost import fan_out

    graph = recurrent_graph()
    snn = import_nir(graph, "nir", dt=1e-3)
    rec, out = graph.nodes["rec"].weight, graph.nodes["out"].weight
    expected = float(((rec != 0).sum() + (out != 0).sum()) / H)
    assert fan_out(snn, torch.zeros(1, IN)) == [pytest.approx(expected)]
