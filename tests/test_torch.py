"""PyTorch models as problems (#18): Problem.from_torch against torch's own autograd, HVPs and
a per-model torch.optim.SGD loop, in float64.  Skipped (with the reason) without the extra
gdstab[torch]; .ci/run installs it through the test extra."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install -e '.[torch]')")
pytest.importorskip("torch2jax", reason="torch2jax is not installed (pip install -e '.[torch]')")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import gdstab  # noqa: E402
from gdstab import Problem  # noqa: E402
from gdstab._validation import InvalidParameterError  # noqa: E402

nn = torch.nn
F = torch.nn.functional

# Tolerances: a loss and its gradient are sums of ~10^2 float64 products computed in a different
# order by XLA and by torch: relative differences of a few 1e-16 are expected (measured: at most
# 4.5e-16 over the models below); 1e-12 leaves room for sums over larger layers without hiding a
# changed definition (the tanh form of GELU differs by ~1e-5, a missing eps by far more).
REL = 1e-12


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    with jax.enable_x64(True):
        yield
    torch.set_default_dtype(old)


def _mlp_with(layer):
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(6, 5), layer, nn.Linear(5, 3))


class _Residual(nn.Module):
    """LayerNorm and a residual connection in a custom forward using torch functions."""

    def __init__(self):
        super().__init__()
        self.inp, self.ln, self.h, self.out = nn.Linear(6, 8), nn.LayerNorm(8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x):
        h = torch.tanh(self.inp(x))
        h = h + F.gelu(self.h(self.ln(h)))
        return self.out(h)


def _cnn():
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 10))


def _digits(n=20):
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.tensor(d.images[:n, None] / 16.0), torch.tensor(d.target[:n])


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(12, 6, generator=g), torch.randn(12, 3, generator=g)


def _theta(module):
    return np.concatenate([p.detach().numpy().ravel() for p in module.parameters()])


def _torch_loss_and_grad(module, data, loss):
    module.eval()
    f = F.mse_loss if loss == "mse" else F.cross_entropy
    value = f(module(data[0]), data[1])
    grads = torch.autograd.grad(value, list(module.parameters()))
    return value.item(), np.concatenate([g.numpy().ravel() for g in grads])


LAYERS = {  # built inside each test, after the float64 default is set
    "Linear": nn.Identity, "ReLU": nn.ReLU, "GELU": nn.GELU, "GELU-tanh": lambda: nn.GELU(approximate="tanh"),
    "Tanh": nn.Tanh, "Sigmoid": nn.Sigmoid, "SiLU": nn.SiLU, "Softplus": nn.Softplus,
    "Softplus-beta": lambda: nn.Softplus(beta=2.0, threshold=1.0), "LayerNorm": lambda: nn.LayerNorm(5),
    "Dropout": lambda: nn.Dropout(0.5),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_each_layer_gives_torchs_loss_and_gradient(name):
    module = _mlp_with(LAYERS[name]())
    data = _data()
    p = Problem.from_torch(module, data, "mse")
    th = _theta(module)
    value, grad = _torch_loss_and_grad(module, data, "mse")
    assert abs(float(p.loss(jnp.asarray(th))) - value) <= REL * abs(value)
    g = np.asarray(jax.grad(p.loss)(jnp.asarray(th)))
    assert np.max(np.abs(g - grad)) <= REL * np.max(np.abs(grad))


def test_gelu_is_the_exact_erf_form_that_torch2jax_alone_gets_wrong():
    """The trap the issue measured: torch2jax maps F.gelu to jax.nn.gelu, the tanh approximation."""
    x = jnp.linspace(-3, 3, 101)
    exact = F.gelu(torch.tensor(np.asarray(x))).numpy()
    assert np.max(np.abs(np.asarray(jax.nn.gelu(x)) - exact)) > 1e-5  # what the plain mapping gives
    module = nn.Sequential(nn.Linear(1, 1, bias=False), nn.GELU())
    with torch.no_grad():
        module[0].weight.fill_(1.0)
    p = Problem.from_torch(module, (np.asarray(x)[:, None], exact[:, None]), "mse")
    assert float(p.loss(jnp.ones(1))) < 1e-30  # our conversion reproduces torch's GELU exactly


@pytest.mark.parametrize("model", ["mlp", "cnn", "residual"])
def test_whole_models_give_torchs_loss_gradient_and_hessian_vector_products(model):
    if model == "cnn":
        module, data, loss = _cnn(), _digits(), "cross_entropy"
    elif model == "mlp":
        torch.manual_seed(3)
        module, data, loss = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.GELU(),
                                           nn.Linear(16, 3)), _data(1), "mse"
    else:
        torch.manual_seed(4)
        module, data, loss = _Residual(), _data(2), "mse"
    p = Problem.from_torch(module, data, loss)
    th = _theta(module)
    value, grad = _torch_loss_and_grad(module, data, loss)
    assert abs(float(p.loss(jnp.asarray(th))) - value) <= REL * abs(value)
    assert np.max(np.abs(np.asarray(jax.grad(p.loss)(jnp.asarray(th))) - grad)) <= REL * np.max(np.abs(grad))
    # Hessian-vector product: forward-over-reverse in JAX against torch's double backward
    v = np.random.default_rng(0).normal(size=th.size)
    hv = np.asarray(jax.jvp(jax.grad(p.loss), (jnp.asarray(th),), (jnp.asarray(v),))[1])
    from torch.func import functional_call

    names = [n for n, _ in module.named_parameters()]
    sizes = [q.numel() for q in module.parameters()]
    shapes = [q.shape for q in module.parameters()]
    f = F.mse_loss if loss == "mse" else F.cross_entropy

    def torch_loss(t):
        parts = torch.split(t, sizes)
        return f(functional_call(module, {n: a.reshape(s) for n, a, s in zip(names, parts, shapes)}, (data[0],)),
                 data[1])

    t = torch.tensor(th, requires_grad=True)
    g = torch.autograd.grad(torch_loss(t), t, create_graph=True)[0]
    hv_torch = torch.autograd.grad(g @ torch.tensor(v), t)[0].numpy()
    assert np.max(np.abs(hv - hv_torch)) <= 1e-10 * np.max(np.abs(hv_torch))


def test_an_unsupported_operation_is_refused_naming_it_and_its_submodule():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(6, 3), nn.ELU())

        def forward(self, x):
            return self.body(x)

    with pytest.raises(InvalidParameterError, match=r"torch\.nn\.functional\.elu.*'body\.1'"):
        Problem.from_torch(Odd(), _data(), "mse")


def test_bad_input_is_refused_with_the_parameter_named():
    with pytest.raises(InvalidParameterError, match="'module' parameter"):
        Problem.from_torch(lambda x: x, _data())
    with pytest.raises(InvalidParameterError, match="'data' parameter"):
        Problem.from_torch(_mlp_with(nn.ReLU()), (np.zeros((4, 6)), np.zeros((5, 3))))
    with pytest.raises(InvalidParameterError, match="'data' parameter.*output shape"):
        Problem.from_torch(_mlp_with(nn.ReLU()), (np.zeros((4, 6)), np.zeros((4, 2))))
    with pytest.raises(InvalidParameterError, match="'loss' parameter"):
        Problem.from_torch(_mlp_with(nn.ReLU()), _data(), "hinge")


def test_members_are_initialised_by_the_modules_own_reset_parameters():
    """Member i: reset_parameters under a seed from its key: reproducible, independent of how
    many are drawn with it, different between members, and with torch's own distribution
    (Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases)."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(50, 40), nn.ReLU(), nn.Linear(40, 3))
    state = torch.random.get_rng_state()
    p = Problem.from_torch(module, (np.zeros((2, 50)), np.zeros((2, 3))))
    from gdstab.random import init_points

    a = init_points(p, 7, np.arange(6))
    b = init_points(p, 7, np.arange(3, 4))
    assert np.array_equal(a[3], b[0])  # the same member, drawn alone
    assert not np.allclose(a[0], a[1])
    assert torch.equal(torch.random.get_rng_state(), state)  # the user's torch RNG untouched
    w1 = a[:, :2000]  # the first layer's weight, in named_parameters order
    bound = 1 / np.sqrt(50)
    assert np.all(np.abs(w1) <= bound) and abs(np.std(w1) - bound / np.sqrt(3)) < 0.05 * bound / np.sqrt(3)
    assert p.options["initialisation"] == "reset_parameters"
    key = jax.random.key(3)
    eager = np.asarray(p.init(key, 3))
    compiled = np.asarray(jax.jit(lambda k: p.init(k, 3))(key))  # through the host callback in XLA
    assert eager.dtype == compiled.dtype == np.float64 and np.array_equal(eager, compiled)


def _torch_sgd_loop(module, theta0, eta, steps, data, loss, batches=None, optim=None):
    """One model at a time with torch.optim.SGD (or ``optim(params, lr)``; no vmap): the
    reference dynamics."""
    f = F.mse_loss if loss == "mse" else F.cross_entropy
    X, Y = data
    out = []
    for i in range(theta0.shape[0]):
        m = module
        torch.nn.utils.vector_to_parameters(torch.tensor(theta0[i]), m.parameters())
        opt = (optim or torch.optim.SGD)(m.parameters(), lr=float(eta[i]))
        for t in range(steps):
            idx = slice(None) if batches is None else torch.tensor(np.array(batches[i][t]))
            opt.zero_grad()
            f(m(X[idx]), Y[idx]).backward()
            opt.step()
        out.append(torch.nn.utils.parameters_to_vector(m.parameters()).detach().numpy().copy())
    return np.stack(out)


@pytest.mark.parametrize("batch", [None, 5])
def test_an_ensemble_of_100_equals_a_per_model_torch_sgd_loop(batch):
    """100 members through gdstab's engine (vmapped, compiled) against torch.optim.SGD one model
    at a time, 50 steps in float64, full batch and minibatches in the same order.  η below
    2/λ_max at the start (as in the MLP parity tests): where G expands, rounding differences in
    the order of a sum grow by |1 − ηλ| per step and two correct implementations drift apart."""
    from gdstab.dynamics import sgd_batch_indices
    from gdstab.sweep.keys import trajectory_keys

    torch.manual_seed(5)
    module = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    data = _data(3)
    p = Problem.from_torch(module, data, "mse")
    theta0 = np.asarray(p.init(jax.random.key(1), 100))
    eta = np.full(100, 0.05)
    kw, batches = {}, None
    if batch:
        kd = np.concatenate([trajectory_keys(0, {}, [i], 0.05) for i in range(100)])
        kw = {"batch_size": batch, "keys": kd}
        batches = [[np.asarray(sgd_batch_indices(jnp.asarray(kd[i]), t, 12, batch)) for t in range(50)]
                   for i in range(100)]
    res = gdstab.trajectories(p, theta0, eta, steps=50, backend="jax",
                              criteria=gdstab.Criteria(tol=1e-300, max_period=1, check_every=32), **kw)
    assert np.all(res.step == 50)
    ref = _torch_sgd_loop(module, theta0, eta, 50, data, "mse", batches)
    np.testing.assert_allclose(res.theta, ref, rtol=0, atol=1e-10)


TORCH_RULES = {
    "momentum:0.9": lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.9),
    "nesterov:0.9": lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.9, nesterov=True),
    "rmsprop:0.99,1e-8": lambda ps, lr: torch.optim.RMSprop(ps, lr=lr, alpha=0.99, eps=1e-8),
    "adam:0.9,0.999,1e-8": lambda ps, lr: torch.optim.Adam(ps, lr=lr, betas=(0.9, 0.999), eps=1e-8),
}


@pytest.mark.parametrize("rule", sorted(TORCH_RULES))
def test_an_ensemble_with_an_optimizer_equals_the_same_torch_optimizer_per_model(rule):
    """The optimizers' parity with PyTorch's own (heavy ball and Nesterov as torch.optim.SGD
    with momentum, RMSprop, Adam): 100 members through the engine against one model at a time,
    50 full-batch steps in float64 from the same weights (η well inside the rule's stability
    threshold at the start, see the GD test above)."""
    torch.manual_seed(6)
    module = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    data = _data(3)
    p = Problem.from_torch(module, data, "mse")
    theta0 = np.asarray(p.init(jax.random.key(2), 100))
    eta = np.full(100, 0.02 if rule.startswith(("momentum", "nesterov")) else 0.002)
    res = gdstab.trajectories(p, theta0, eta, steps=50, backend="jax", optimizer=rule,
                              criteria=gdstab.Criteria(tol=1e-300, max_period=1, check_every=32))
    assert np.all(res.step == 50)
    ref = _torch_sgd_loop(module, theta0, eta, 50, data, "mse", optim=TORCH_RULES[rule])
    assert np.abs(ref - theta0).max() > 1e-3  # the runs moved: the comparison is not of θ₀ with itself
    np.testing.assert_allclose(res.theta, ref, rtol=0, atol=1e-10)


def test_without_torch_the_error_names_the_extra(monkeypatch):
    import builtins

    from gdstab.problems import torch_model

    real = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name.startswith("torch"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(InvalidParameterError, match=r"gdstab\[torch\].*torch==2\.13\.0"):
        torch_model.from_torch(Problem, object(), None)


# ------------------------------------------------------------------------ --model on the CLI

MODEL = "tests/models/small_torch_model.py"


def test_model_flag_runs_a_users_torch_file_with_builtin_data(capsys, monkeypatch):
    import json

    from gdstab.cli import main

    monkeypatch.chdir(__import__("pathlib").Path(__file__).resolve().parents[1])
    assert main(["trajectories", "--model", f"{MODEL}:build", "--data", "digits", "--samples", "60", "--eta", "0.5",
                 "--inits", "4", "--steps", "50", "--json", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["problem"] == "model:small_torch_model.py:build" and out["results"][0]["n"] == 4
    assert "cross-entropy" in out["normalisation"] and "60 samples" in out["normalisation"]
    # the factory's own data; mse on labels turns them into one-hot targets
    assert main(["trajectories", "--model", f"{MODEL}:with_data", "--objective", "mse", "--eta", "0.5", "--inits", "2",
                 "--steps", "20", "--json", "--quiet"]) == 0
    assert "mean squared error" in json.loads(capsys.readouterr().out)["normalisation"]


@pytest.mark.parametrize("argv, match", [
    (["--model", "nowhere.py:build", "--data", "digits"], "existing Python file"),
    (["--model", f"{MODEL}", "--data", "digits"], "FILE.py:FACTORY"),
    (["--model", f"{MODEL}:missing", "--data", "digits"], "has no function 'missing'"),
    (["--model", f"{MODEL}:broken", "--data", "digits"], "RuntimeError: the user's factory failed"),
    (["--model", f"{MODEL}:build"], "needs data"),
    (["--model", f"{MODEL}:build", "--data", "cifar"], "'--data' parameter must be one of digits, mnist01"),
    (["--problem", "hyperbola", "--data", "digits"], "go with --model"),
])
def test_model_flag_refuses_bad_input_with_one_line(argv, match, capsys, monkeypatch):
    from gdstab.cli import main

    monkeypatch.chdir(__import__("pathlib").Path(__file__).resolve().parents[1])
    assert main(["trajectories", *argv, "--eta", "0.5", "--inits", "2", "--steps", "5"]) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1, err


def test_critical_lr_of_a_users_torch_model_brackets_torchs_own_bisection(capsys, monkeypatch):
    """End to end: `gdstab critical-lr --model FILE:build --data digits --objective mse` (criterion
    'trains': more than half of the runs do not diverge) against the same predicate evaluated by
    per-model torch.optim.SGD runs from the same initial weights, bisected the same way."""
    import json

    from gdstab.cli import main
    from gdstab.problems.user_model import model_problem
    from gdstab.random import init_points

    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    inits, steps = 8, 200
    assert main(["critical-lr", "--model", f"{MODEL}:build", "--data", "digits", "--samples", "100", "--objective",
                 "mse", "--eta-range", "0.1,1000", "--inits", str(inits), "--steps", str(steps), "--json", "--quiet"]) == 0
    got = json.loads(capsys.readouterr().out)
    lo, hi = got["interval"]
    p = model_problem(f"{MODEL}:build", "digits", 100, "mse")
    theta0 = init_points(p, 0, np.arange(inits))
    import importlib.util

    from gdstab.problems.user_model import builtin_data

    spec = importlib.util.spec_from_file_location("m", root / MODEL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    X, y, _ = builtin_data("digits", 100)
    X, Y = torch.tensor(X), torch.tensor(np.eye(10)[y])  # mse on one-hot targets, as --objective mse

    def trains(eta):
        kept = 0
        for th in theta0:
            m = mod.build().double()
            torch.nn.utils.vector_to_parameters(torch.tensor(th), m.parameters())
            opt = torch.optim.SGD(m.parameters(), lr=eta)
            ok = True
            for _ in range(steps):
                opt.zero_grad()
                F.mse_loss(m(X), Y).backward()
                opt.step()
                v = torch.nn.utils.parameters_to_vector(m.parameters()).detach()
                if not torch.all(torch.isfinite(v)) or float(v.norm()) > 1e6:
                    ok = False
                    break
            kept += ok
        return kept / inits > 0.5

    a, b = 0.1, 1000.0
    assert trains(a) and not trains(b)
    while b / a > 1.01:
        c = float(np.sqrt(a * b))
        a, b = (c, b) if trains(c) else (a, c)
    assert lo <= b and a <= hi, (got["interval"], (a, b))  # the two brackets of the threshold overlap


def test_a_sweep_config_runs_a_users_model_and_refuses_a_changed_model_file(tmp_path):
    """[problem] model = "FILE.py:FACTORY" (relative to the config), with data, samples and
    objective; the file's SHA-256 is part of the config, so a folder is never resumed with a
    model file that changed since it was written."""
    import shutil

    import xarray as xr

    from gdstab import sweep
    from gdstab.sweep import load_config

    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    shutil.copy(root / MODEL, tmp_path / "net.py")
    (tmp_path / "net.toml").write_text('[problem]\nmodel = "net.py:build"\ndata = "digits"\nsamples = 40\n'
                                       'objective = "mse"\n[grid]\neta = [0.1, 5.0]\ninits = 4\n[run]\nsteps = 30\n'
                                       '[criteria]\ntol = 1e-4\nf_tol = 1e9\n')
    cfg = load_config(tmp_path / "net.toml")
    assert cfg.problem.model == f"{tmp_path / 'net.py'}:build" and len(cfg.problem.model_sha256) == 64
    ds = sweep.run(cfg, tmp_path / "out", quiet=True)
    assert ds.status.shape == (2, 4) and np.all(ds.status.values[1] == int(gdstab.Status.DIVERGED))
    xr.testing.assert_identical(ds, sweep.run(load_config(tmp_path / "net.toml"), tmp_path / "out", quiet=True))
    (tmp_path / "net.py").write_text((tmp_path / "net.py").read_text().replace("Linear(64, 16)", "Linear(64, 17)")
                                     .replace("Linear(16, 10)", "Linear(17, 10)"))
    with pytest.raises(InvalidParameterError):
        sweep.run(load_config(tmp_path / "net.toml"), tmp_path / "out", quiet=True)
    stored = (tmp_path / "out" / "config.toml").read_text()
    with pytest.raises(InvalidParameterError, match="changed since this config was written"):
        load_config(stored)
