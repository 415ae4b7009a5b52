"""Multi-process (torchrun, Gloo on the CPU) training of the denoiser and of the GAN.

Identical weights on all ranks, falling loss, the same result as a single process, resume; plus the helpers
of nt2c.run.distributed outside torchrun.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from nt2c.config import stage_config
from nt2c.denoiser import toy_pairs, train_denoiser
from nt2c.errors import ConfigError, InputError
from nt2c.run import distributed

SETTINGS = dict(
    steps=24, checkpoint_every=8, width=4, batch_size=4, patch_px=32, lr=3e-3, device="cpu", seed=5
)

WORKER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    from nt2c.run import distributed
    from nt2c.config import stage_config
    from nt2c.denoiser import toy_pairs, train_denoiser

    out, tag, kill_at = Path(sys.argv[1]), sys.argv[3], int(sys.argv[4])
    settings = stage_config("train-coarse", "smoke", **json.loads(sys.argv[2]))
    noisy, clean = toy_pairs(12, 48, seed=3)

    def on_step(step, loss):
        if step == kill_at:
            raise SystemExit(3)  # a kill after the checkpoint of step 8

    res = train_denoiser(noisy, clean, settings, checkpoint_path=out / f"{tag}.pt", on_step=on_step)
    r = distributed.rank()
    torch.save(res.model.state_dict(), out / f"{tag}_rank{r}.pt")
    meta = {"world": distributed.world_size(), "curves": res.curves, "info": res.info,
            "resumed_from": res.resumed_from}
    (out / f"{tag}_rank{r}.json").write_text(json.dumps(meta))
    """
)


def _launch(script, *args):
    """``torchrun --standalone --nproc-per-node 2 script args...`` (Gloo on the CPU, one thread per rank)."""
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", NT2C_PROGRESS="0")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(script),
    ]
    return subprocess.run(cmd + [str(a) for a in args], env=env, capture_output=True, text=True, timeout=900)


def _torchrun(out, tag, kill_at=0):
    script = out / "worker.py"
    script.write_text(WORKER)
    return _launch(script, out, json.dumps(SETTINGS), tag, kill_at)


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    proc = _torchrun(out, "full")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def test_all_ranks_end_with_identical_weights(two_rank_run):
    states = [torch.load(two_rank_run / f"full_rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert states[0].keys() == states[1].keys()
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    for r in (0, 1):
        meta = json.loads((two_rank_run / f"full_rank{r}.json").read_text())
        assert meta["world"] == 2 and meta["info"]["world_size"] == 2
    assert not (two_rank_run / "full.pt").exists()  # rank 0 wrote checkpoints and removed the last one


def test_distributed_loss_falls(two_rank_run):
    losses = [
        e["loss"] for e in json.loads((two_rank_run / "full_rank0.json").read_text())["curves"]["train"]
    ]
    assert len(losses) == SETTINGS["steps"]
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def test_two_ranks_match_a_single_process_on_the_global_batch(two_rank_run):
    """Each rank trains on half the seeded global batch; DDP's mean gradient is the single-process one."""
    torch.set_num_threads(1)
    noisy, clean = toy_pairs(12, 48, seed=3)
    single = train_denoiser(noisy, clean, stage_config("train-coarse", "smoke", **SETTINGS))
    ddp_state = torch.load(two_rank_run / "full_rank0.pt", weights_only=True)
    for key, value in single.model.state_dict().items():
        assert torch.allclose(value, ddp_state[key], atol=2e-4, rtol=1e-3), key
    ddp_losses = [
        e["loss"] for e in json.loads((two_rank_run / "full_rank0.json").read_text())["curves"]["train"]
    ]
    assert ddp_losses[0] == pytest.approx(single.curves["train"][0]["loss"], rel=1e-4)


def test_killed_two_rank_training_resumes_to_identical_weights(two_rank_run):
    killed = _torchrun(two_rank_run, "resume", kill_at=12)
    assert killed.returncode != 0 and (two_rank_run / "resume.pt").is_file()  # rank 0's checkpoint of step 8
    proc = _torchrun(two_rank_run, "resume")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    full = torch.load(two_rank_run / "full_rank0.pt", weights_only=True)
    for r in (0, 1):
        assert json.loads((two_rank_run / f"resume_rank{r}.json").read_text())["resumed_from"] == 8
        state = torch.load(two_rank_run / f"resume_rank{r}.pt", weights_only=True)
        for key, value in full.items():
            assert torch.equal(value, state[key]), key


def test_shard_is_a_round_robin_partition():
    items = list(range(11))
    parts = [distributed.shard(items, rank=r, world_size=3) for r in range(3)]
    assert parts == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    assert sorted(sum(parts, [])) == items
    with pytest.raises(ConfigError):
        distributed.shard(items, rank=3, world_size=3)


def test_helpers_are_no_ops_in_a_single_process(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed.is_distributed()
    assert distributed.rank() == 0 and distributed.world_size() == 1 and distributed.is_main()
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    assert distributed.all_reduce_mean(2.5) == 2.5
    distributed.barrier()
    assert distributed.shard([1, 2, 3]) == [1, 2, 3]
    assert distributed.init_distributed("cpu") == torch.device("cpu")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE"):
        distributed.world_size()


def test_incomplete_torchrun_environment_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    noisy, clean = toy_pairs(6, 32, seed=1)
    with pytest.raises(ConfigError, match="torchrun"):
        train_denoiser(noisy, clean, stage_config("train-coarse", "smoke", **SETTINGS))


def test_global_batch_must_split_evenly_across_ranks(monkeypatch):
    monkeypatch.setattr(distributed, "init_distributed", lambda device="auto": torch.device("cpu"))
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    noisy, clean = toy_pairs(6, 32, seed=1)
    with pytest.raises(InputError, match="multiple of the 3"):
        train_denoiser(noisy, clean, stage_config("train-coarse", "smoke", **SETTINGS))


def test_pipeline_under_torchrun_refuses_single_process_stages(tmp_path, monkeypatch):
    from nt2c.errors import StageError
    from nt2c.run.rundir import RunDir
    from nt2c.run.stages import run_stage

    run = RunDir(tmp_path / "run")
    run.init_params()
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(StageError, match="without torchrun"):
        run_stage("simulate", run, profile="smoke")
    with pytest.raises(StageError, match="without torchrun"):  # its requirement is not there yet
        run_stage("train-coarse", run, profile="smoke")
    with pytest.raises(StageError, match="extract-noise first"):  # a distributed stage, requirement missing
        run_stage("train-gan", run, profile="smoke")
    assert not (run.path / "simulated").exists() or not any((run.path / "simulated").iterdir())


# -- the GAN (stage train-gan through the pipeline) ------------------------------------------------------
GAN_SETTINGS = dict(
    width=8,
    latent_dim=16,
    batch_size=8,
    iterations=6,
    n_critic=2,
    checkpoint_every=3,
    lr=2e-3,
    n_eval=8,
    device="cpu",
    seed=3,
)

GAN_WORKER = textwrap.dedent(
    """
    import json, sys
    import torch
    torch.set_num_threads(1)
    from nt2c.run import distributed
    from nt2c.noise import cross_rank, gan as noise_model
    from nt2c.noise.stage import split_patches
    from nt2c.run.stages import run_stage
    from nt2c.run.rundir import RunDir

    run, overrides, kill_at = RunDir(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
    held = {}
    train_gan = noise_model.train_gan

    def spy(*args, **kwargs):  # keep what this rank trained; die after iteration kill_at when asked
        def on_iteration(it, values):
            if it == kill_at:
                raise SystemExit(3)

        held["gan"] = train_gan(*args, on_iteration=on_iteration, **kwargs)
        return held["gan"]

    def exact_step_errors():  # float64 gradients of a step on rows r::2 vs the whole batch in one process
        import copy
        from nt2c.noise.networks import Critic, Generator

        torch.manual_seed(0)
        f64 = dict(dtype=torch.float64)
        gen = Generator(patch_px=64, latent_dim=16, width=8).double()
        critic = Critic(patch_px=64, width=8).double()
        nets = {"ref": (copy.deepcopy(gen), copy.deepcopy(critic)), "ddp": (gen, critic)}
        z, real, eps = torch.randn(8, 16, **f64), torch.randn(8, 1, 64, 64, **f64), torch.rand(8, **f64)
        cross_rank.to_cross_rank(gen)
        grads = {}
        for name, (g, c) in nets.items():
            rows = slice(distributed.rank(), None, 2) if name == "ddp" else slice(None)
            fake = g(z[rows])
            gp = noise_model.gradient_penalty(c, real[rows], fake.detach(), eps=eps[rows])
            (c(fake.detach()).mean() - c(real[rows]).mean() + 10 * gp).backward()  # double backward (gp)
            if name == "ddp":
                cross_rank.average_gradients(c)
            (-c(fake).mean()).backward(inputs=list(g.parameters()))  # through batch norm over both ranks
            if name == "ddp":
                cross_rank.average_gradients(g)
            grads[name] = [[p.grad for p in c.parameters()], [p.grad for p in g.parameters()]]
            grads[name].append(list(g.buffers()))
        return {
            part: max(
                float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30))
                for a, b in zip(grads["ddp"][i], grads["ref"][i])
            )
            for i, part in enumerate(("critic_grad", "generator_grad", "generator_buffers"))
        }

    distributed.init_distributed("cpu")
    errors = exact_step_errors()
    if not kill_at:  # one iteration, checkpointed: the generator's running statistics of the global batches
        from nt2c.config import stage_config
        from nt2c.io import read_mrc

        patches, _ = read_mrc(run.noise / "patches.mrcs")
        one = stage_config("train-gan", "smoke", **{**overrides, "iterations": 1})
        train = split_patches(len(patches), one.holdout_fraction, seed=one.seed)[0]
        train_gan(patches[train], one, checkpoint_path=run.path / "one_iteration.pt")
    noise_model.train_gan = spy  # train_gan_stage looks it up in the module
    run_stage("train-gan", run, profile="smoke", **overrides)
    r, gan = distributed.rank(), held["gan"]
    nets = {"generator": gan.generator.state_dict(), "critic": gan.critic.state_dict()}
    torch.save(nets, run.path / f"rank{r}.pt")
    meta = {"world": distributed.world_size(), "curves": gan.curves, "resumed_from": gan.resumed_from}
    (run.path / f"rank{r}.json").write_text(json.dumps({**meta, "exact_step_errors": errors}))
    """
)


def _noise_patches(n=20, size=72, seed=4):
    """Correlated (Gaussian-filtered) skewed noise patches, offset 10."""
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(np.random.default_rng(seed).normal(size=(n, size, size)), (0, 1.5, 1.5))
    return (10.0 + np.exp(field / field.std())).astype(np.float32)


def _gan_run(path):
    """Make a run folder holding noise/patches.mrcs, stamped as if extract-noise had made it."""
    from nt2c.io import write_mrc
    from nt2c.run.rundir import RunDir

    run = RunDir(path)
    run.init_params()
    write_mrc(run.noise / "patches.mrcs", _noise_patches(), pixel_size_A=1.5)
    run.write_stamp("extract-noise", [run.noise / "patches.mrcs"], {})
    (run.path / "worker.py").write_text(GAN_WORKER)
    return run


def _torchrun_gan(run, kill_at=0):
    return _launch(run.path / "worker.py", run.path, json.dumps(GAN_SETTINGS), kill_at)


def _nets(path):
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def gan_two_rank_run(tmp_path_factory):
    run = _gan_run(tmp_path_factory.mktemp("gan") / "run")
    proc = _torchrun_gan(run)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run


def test_gan_ranks_end_with_identical_weights_and_batchnorm_buffers(gan_two_rank_run):
    from safetensors.torch import load_file

    run = gan_two_rank_run
    ranks = [_nets(run.path / f"rank{r}.pt") for r in (0, 1)]
    for net in ("generator", "critic"):
        assert ranks[0][net].keys() == ranks[1][net].keys()
        for key, value in ranks[0][net].items():
            assert torch.equal(value, ranks[1][net][key]), (net, key)
    buffers = [k for k in ranks[1]["generator"] if k.endswith(("running_mean", "running_var"))]
    assert len(buffers) == 10  # five batch-norm layers, recalibrated: not the initial zeros and ones
    assert not torch.equal(
        ranks[1]["generator"][buffers[1]], torch.ones_like(ranks[1]["generator"][buffers[1]])
    )
    # rank 0 wrote the model, the curves and the stamp; the saved generator is what rank 1 holds
    saved = load_file(str(run.models / "gan.safetensors"))
    assert saved.keys() == ranks[1]["generator"].keys()
    for key, value in saved.items():
        assert torch.equal(value, ranks[1]["generator"][key]), key
    assert run.is_complete("train-gan") and (run.report / "noise_fidelity.json").is_file()
    for r in (0, 1):
        meta = json.loads((run.path / f"rank{r}.json").read_text())
        assert meta["world"] == 2 and meta["resumed_from"] == 0
        assert meta["curves"]["iteration"] == list(range(1, GAN_SETTINGS["iterations"] + 1))


def test_gan_two_ranks_match_a_single_process_on_the_global_batch(gan_two_rank_run, tmp_path):
    """Two processes train as one on the global batch: exactly in float64, to rounding in float32.

    Each rank takes rows rank::2 of the same seeded batches; gradients are averaged and the generator's batch
    norm uses both ranks' rows.
    """
    from nt2c.io import read_json
    from nt2c.noise.gan import train_gan

    torch.set_num_threads(1)
    run = gan_two_rank_run
    train_idx = read_json(run.models / "gan.json")["split"]["train"]
    single = train_gan(_noise_patches()[train_idx], stage_config("train-gan", "smoke", **GAN_SETTINGS))
    meta = json.loads((run.path / "rank0.json").read_text())
    # exact in float64: averaged critic gradients (through the gradient penalty's double backward),
    # generator gradients and running statistics through the batch norm over both ranks' rows
    for part, error in meta["exact_step_errors"].items():
        assert error < 1e-10, part
    # train_gan itself: after one iteration the generator's running statistics (n_critic + 1 forward passes
    # at the initial weights, each over both ranks' rows) are the single-process ones
    one = stage_config("train-gan", "smoke", **{**GAN_SETTINGS, "iterations": 1})
    train_gan(_noise_patches()[train_idx], one, checkpoint_path=tmp_path / "one.pt")
    ref, two = (_nets(path)["generator"] for path in (tmp_path / "one.pt", run.path / "one_iteration.pt"))
    for key in [k for k in ref if k.endswith(("running_mean", "running_var"))]:
        torch.testing.assert_close(two[key], ref[key], rtol=1e-4, atol=1e-6, msg=lambda m: f"{key}: {m}")
    # in float32 the critic steps of the first iteration agree; then the runs drift apart: Adam's first steps
    # move each weight by about +-lr whatever the size of its gradient, so float32 rounding flips the sign of
    # the update of near-zero gradient entries (measured: critic weights 4e-3 apart after two steps)
    curves = meta["curves"]
    for key in ("critic_loss", "wasserstein_estimate", "gradient_penalty", "grad_norm"):
        assert curves[key][0] == pytest.approx(single.curves[key][0], rel=1e-3, abs=1e-5), key
    for c in (curves, single.curves):  # both critics leave the initial flat state (gradient norm ~0)
        assert c["critic_loss"][0] > 9.9 and c["critic_loss"][-1] < 8.0  # the penalty 10 (|grad| - 1)^2 falls
        assert c["grad_norm"][-1] > 100 * c["grad_norm"][0]


def test_killed_two_rank_gan_training_resumes_to_identical_weights(gan_two_rank_run, tmp_path):
    run = _gan_run(tmp_path / "run")
    killed = _torchrun_gan(run, kill_at=4)
    assert killed.returncode != 0 and (run.checkpoints / "gan.pt").is_file()  # rank 0's of iteration 3
    assert not run.is_complete("train-gan")
    proc = _torchrun_gan(run)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    full = _nets(gan_two_rank_run.path / "rank0.pt")
    for r in (0, 1):
        assert json.loads((run.path / f"rank{r}.json").read_text())["resumed_from"] == 3
        state = _nets(run.path / f"rank{r}.pt")
        for net in ("generator", "critic"):
            for key, value in full[net].items():
                assert torch.equal(value, state[net][key]), (net, key)


def test_gan_global_batch_must_split_evenly_across_ranks(monkeypatch):
    from nt2c.noise.gan import train_gan

    monkeypatch.setattr(distributed, "init_distributed", lambda device="auto": torch.device("cpu"))
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    with pytest.raises(InputError, match="multiple of the 3"):
        train_gan(_noise_patches(), stage_config("train-gan", "smoke", **GAN_SETTINGS))
