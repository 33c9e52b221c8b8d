"""train.precision = "auto" (the default): Accelerate's configured mixed precision, else bf16 on GPUs with native
bf16, fp16 on older GPUs, no on CPU; an explicit value wins; emulated bf16 is refused. The GPU cases run on any
machine: the capability queries are patched (smallgan/device.py asks them, nothing else does)."""

import pytest
import torch

from smallgan import device as dev
from smallgan.config import ConfigError, load_config, recipe_names

CUDA = torch.device("cuda")
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _no_accelerate_configuration(monkeypatch):
    """Neither the caller's environment nor a user's `accelerate config` file reaches these tests."""
    monkeypatch.delenv(dev.ACCELERATE_ENV, raising=False)
    monkeypatch.setattr(dev, "accelerate_config_file", lambda: None)


def fake_gpu(monkeypatch, *, native: bool, name: str = "NVIDIA Test GPU") -> list[bool]:
    """A visible CUDA GPU whose bf16 is native or only emulated (what torch reports for a T4 or a V100)."""
    calls = []

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        calls.append(including_emulation)
        return native or including_emulation

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    return calls


# ---------------------------------------------------------------------------------------------------------------
# The rule (pure)


@pytest.mark.parametrize("requested, accelerate, cuda, native, expected", [
    ("auto", None, False, False, "no"),      # CPU
    ("auto", None, True, True, "bf16"),      # A100, H100, RTX 30xx+
    ("auto", None, True, False, "fp16"),     # T4, V100
    ("auto", "fp16", True, True, "fp16"),    # Accelerate's setting first
    ("auto", "no", True, True, "no"),
    ("auto", "bf16", False, False, "bf16"),  # bf16 autocast on the CPU works
    ("auto", "BF16", True, True, "bf16"),
    ("no", "fp16", True, True, "no"),        # an explicit value wins over Accelerate's
    ("bf16", "fp16", True, True, "bf16"),
    ("fp16", None, True, True, "fp16"),
    ("bf16", None, False, False, "bf16"),
])
def test_resolve_precision(requested, accelerate, cuda, native, expected):
    assert dev.resolve_precision(requested, accelerate, cuda, native) == expected


@pytest.mark.parametrize("requested, accelerate, cuda, native, words", [
    ("bf16", None, True, False, ["train.precision=bf16", "no native bf16", "use train.precision=fp16"]),
    ("auto", "bf16", True, False, ["from Accelerate", "no native bf16", "fp16"]),
    ("fp16", None, False, False, ["fp16 needs a CUDA GPU"]),
    ("auto", "fp16", False, False, ["from Accelerate", "fp16 needs a CUDA GPU"]),
    ("auto", "fp8", True, True, ["'fp8'", "does not support", "--precision"]),
    ("fp32", None, True, True, ["train.precision must be one of"]),
])
def test_impossible_precisions_are_refused_in_one_line(requested, accelerate, cuda, native, words):
    with pytest.raises(ConfigError) as err:
        dev.resolve_precision(requested, accelerate, cuda, native)
    assert "\n" not in str(err.value) and all(w in str(err.value) for w in words), str(err.value)


# ---------------------------------------------------------------------------------------------------------------
# With the machine's answers: Accelerate's environment variable and config file, the capability queries


def test_auto_takes_accelerates_environment_variable(tmp_path, monkeypatch):
    fake_gpu(monkeypatch, native=True)
    config = tmp_path / "default_config.yaml"
    config.write_text("mixed_precision: fp16\n")
    monkeypatch.setattr(dev, "accelerate_config_file", lambda: config)   # `accelerate config` was run
    for value in ("fp16", "no", "bf16"):
        monkeypatch.setenv(dev.ACCELERATE_ENV, value)   # what `accelerate launch --mixed_precision VALUE` sets
        choice = dev.choose_precision("auto", CUDA)
        assert choice.value == value and f"{dev.ACCELERATE_ENV}={value}" in choice.why
        # fp32 on a GPU because of Accelerate's setting is said once.
        assert (choice.note is not None) == (value == "no")
    monkeypatch.setenv(dev.ACCELERATE_ENV, "no")
    note = dev.choose_precision("auto", CUDA).note
    assert "training in fp32" in note and "--precision bf16" in note
    assert dev.choose_precision("auto", CPU).note is None                 # on a CPU, fp32 is the normal case
    monkeypatch.setenv(dev.ACCELERATE_ENV, "bf16")
    assert dev.choose_precision("auto", CPU).value == "bf16"
    assert dev.choose_precision("fp16", CUDA).value == "fp16"               # explicit wins
    assert dev.choose_precision("no", CUDA).value == "no"


def test_accelerate_launchs_own_default_is_not_a_request_for_fp32(monkeypatch):
    # Without --mixed_precision and without a config file, `accelerate launch` exports "no" as its default.
    fake_gpu(monkeypatch, native=True)
    monkeypatch.setattr(dev, "accelerate_config_file", lambda: None)
    monkeypatch.setenv(dev.ACCELERATE_ENV, "no")
    assert dev.accelerate_mixed_precision() is None
    assert dev.choose_precision("auto", CUDA).value == "bf16"
    assert dev.choose_precision("no", CUDA).value == "no"                   # fp32 stays one flag away
    monkeypatch.setenv(dev.ACCELERATE_ENV, "fp16")                          # a value other than the default is asked
    assert dev.choose_precision("auto", CUDA).value == "fp16"


def test_auto_reads_accelerates_config_file_without_the_variable(tmp_path, monkeypatch):
    config = tmp_path / "default_config.yaml"
    config.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: 'NO'\nmixed_precision: fp16\n")
    assert dev.accelerate_mixed_precision({}, config)[0] == "fp16"
    assert dev.accelerate_mixed_precision({dev.ACCELERATE_ENV: "bf16"}, config)[0] == "bf16"   # launch's value first
    config.write_text('{"distributed_type": "NO", "fp16": true}')                              # the old JSON format
    assert dev.accelerate_mixed_precision({}, config)[0] == "fp16"
    config.write_text("distributed_type: [unclosed\n")                                          # unreadable: ignored
    assert dev.accelerate_mixed_precision({}, config) is None
    assert dev.accelerate_mixed_precision({}, tmp_path / "absent.yaml") is None
    assert dev.accelerate_mixed_precision({}, None) is None
    # The default file is the one `accelerate config` writes.
    config.write_text("mixed_precision: bf16\n")
    monkeypatch.setattr(dev, "accelerate_config_file", lambda: config)
    fake_gpu(monkeypatch, native=False)
    choice = dev.choose_precision("no", CUDA)
    assert choice.value == "no"
    with pytest.raises(ConfigError, match="use train.precision=fp16"):
        dev.choose_precision("auto", CUDA)


def test_auto_is_no_on_cpu():
    choice = dev.choose_precision("auto", CPU)
    assert (choice.value, choice.note) == ("no", None) and "cpu" in choice.why


def test_auto_is_bf16_with_native_bf16_and_fp16_without(monkeypatch):
    calls = fake_gpu(monkeypatch, native=True, name="NVIDIA A100-SXM4-40GB")
    choice = dev.choose_precision("auto", CUDA)
    assert choice.value == "bf16" and choice.why == "auto: native bf16 on NVIDIA A100-SXM4-40GB"
    assert calls and not any(calls)       # asked with including_emulation=False only
    fake_gpu(monkeypatch, native=False, name="Tesla T4")
    choice = dev.choose_precision("auto", CUDA)
    assert choice.value == "fp16" and choice.why == "auto: Tesla T4 has no native bf16"


def test_explicit_bf16_on_an_emulated_bf16_gpu_is_refused(monkeypatch):
    fake_gpu(monkeypatch, native=False, name="Tesla T4")
    assert torch.cuda.is_bf16_supported()              # what the old guard asked: emulation counts as support
    with pytest.raises(ConfigError) as err:
        dev.choose_precision("bf16", CUDA)
    msg = str(err.value)
    assert "\n" not in msg and "no native bf16" in msg and "use train.precision=fp16" in msg
    assert dev.choose_precision("fp16", CUDA).value == "fp16"


# ---------------------------------------------------------------------------------------------------------------
# Config and recipes


def test_auto_is_the_default_and_no_recipe_pins_bf16():
    assert load_config().train.precision == "auto"
    assert load_config(None, ["train.precision=auto"]).train.precision == "auto"
    pinned = {name: load_config(name).train.precision for name in recipe_names()}
    assert all(p in ("auto", "no") for p in pinned.values()), pinned
    assert pinned["anime64"] == pinned["imagenet128"] == pinned["tiny-cpu"] == "auto"


# ---------------------------------------------------------------------------------------------------------------
# In the training loop: the Accelerator gets the resolved value, the log and config.json say it


@pytest.fixture
def fresh_accelerate_state():
    """Accelerate keeps one mixed precision per process; these tests use another one than the rest of the suite."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    yield
    AcceleratorState._reset_state()


def test_the_trainer_uses_accelerates_mixed_precision_and_records_it(tmp_path, monkeypatch, capsys,
                                                                      fresh_accelerate_state):
    import json

    from smallgan.training.loop import Trainer
    from smallgan.training.phases import UnitScaler

    monkeypatch.setenv(dev.ACCELERATE_ENV, "bf16")
    cfg = load_config("tiny-cpu", ["model.ch=4", "model.z_dim=32", "model.shared_dim=8", "train.batch=4",
                                   "train.micro_batch=4", "train.max_steps=1", "train.sample_every=0",
                                   "train.sv_every=0", "sample.n=4", f"train.out_dir={tmp_path}"])
    assert cfg.train.precision == "auto"
    trainer = Trainer(cfg)
    assert trainer.precision == "bf16" and trainer.accelerator.mixed_precision == "bf16"
    assert all(isinstance(s, UnitScaler) for s in (trainer.state.g_scaler, trainer.state.d_scaler))   # scalers are for fp16 only
    trainer.run()
    assert "precision bf16 (auto: from Accelerate, ACCELERATE_MIXED_PRECISION=bf16)" in capsys.readouterr().err
    assert json.loads((trainer.run_dir / "config.json").read_text())["train"]["precision"] == "bf16"


# ---------------------------------------------------------------------------------------------------------------
# The other device-dependent choices in smallgan/device.py


def test_accelerate_runs_on_the_cpu_when_told_or_when_processes_have_no_gpu(monkeypatch):
    assert dev.accelerate_cpu({"ACCELERATE_USE_CPU": "true"})            # accelerate launch --cpu
    assert not dev.accelerate_cpu({"ACCELERATE_USE_CPU": "false"})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert dev.accelerate_cpu({"WORLD_SIZE": "2"}) and not dev.accelerate_cpu({"WORLD_SIZE": "1"})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert not dev.accelerate_cpu({"WORLD_SIZE": "2"})                    # torchrun on GPUs: NCCL, not gloo


def test_fused_adam_is_asked_of_pytorch_and_the_foreach_one_skips_bad_steps_too(tmp_path, monkeypatch, capsys):
    assert dev.fused_adam_supported(CPU)                                  # torch >= 2.4
    assert not dev.fused_adam_supported(torch.device("meta"))             # no fused kernel there: asked, not assumed
    import smallgan.training.build as build
    import smallgan.training.loop as loop

    monkeypatch.setattr(build, "fused_adam_supported", lambda device: False)
    cfg = load_config("tiny-cpu", ["model.ch=4", "model.z_dim=32", "model.shared_dim=8", "train.batch=4",
                                   "train.micro_batch=4", "train.sv_every=0", "sample.n=4",
                                   f"train.out_dir={tmp_path}"])
    trainer = loop.Trainer(cfg)
    assert "no fused Adam" in capsys.readouterr().err
    assert not any(g.get("fused") for g in trainer.state.d_opt.param_groups)
    trainer.train_iteration()
    before = {k: v.clone() for k, v in trainer.D.named_parameters()}
    forward = trainer.D.forward
    trainer.D.forward = lambda x, y: forward(x, y) * float("nan")
    trainer.train_iteration()
    assert all(torch.equal(before[k], v) for k, v in trainer.D.named_parameters())
    assert trainer.state.sync().skipped_d == 1
