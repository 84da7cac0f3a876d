"""`--device` text -> torch.device (mftlab.models.device), and TrainConfig's `device` field."""

import pytest
import torch

from mftlab.errors import ConfigError
from mftlab.models.device import Launch, check_device, join_launch, model_device, resolve_device
from mftlab.training.config import TrainConfig

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("text, plain", [("auto", "auto"), ("CPU", "cpu"), (" cuda ", "cuda"), ("cuda:3", "cuda:3")])
def test_device_text_is_checked_and_normalised(text, plain):
    assert check_device(text) == plain


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:x", "cuda:-1", "mps", "", "cpu:0"])
def test_bad_device_text_names_the_value_and_the_choices(text):
    with pytest.raises(ConfigError) as info:
        resolve_device(text)
    assert info.value.cli_message().startswith(f"--device '{text}' is not a device; use auto, cpu, cuda or cuda:N")
    assert str(info.value).startswith(f"device='{text}'")


def test_cpu_is_the_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cpu", local_rank=3) == torch.device("cpu")


@no_cuda
def test_auto_without_cuda_is_the_cpu():
    assert resolve_device() == torch.device("cpu")
    assert resolve_device("auto", local_rank=1) == torch.device("cpu")


@no_cuda
@pytest.mark.parametrize("text", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_without_cuda_says_so_and_how_to_fix_it(text):
    with pytest.raises(ConfigError) as info:
        resolve_device(text)
    message = info.value.cli_message()
    assert message.startswith(f"--device {text} needs a CUDA GPU") and "use --device cpu" in message
    assert "\n" not in message


@cuda
def test_cuda_takes_the_local_rank_and_a_missing_gpu_is_an_error():
    assert resolve_device("cuda", local_rank=0) == torch.device("cuda", 0)
    assert resolve_device("auto", local_rank=0) == torch.device("cuda", 0)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ConfigError, match="GPU"):
        resolve_device("cuda:999")
    with pytest.raises(ConfigError, match="local rank 999"):
        resolve_device("cuda", local_rank=999)


def test_alone_there_is_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    launch = join_launch(torch.device("cpu"))
    assert launch == Launch(0, 1, torch.device("cpu"))
    assert not launch.distributed and launch.is_main
    launch.barrier()  # nothing to wait for
    assert not torch.distributed.is_initialized()


def test_model_device(tiny_llama):
    assert model_device(tiny_llama) == torch.device("cpu")
    assert model_device(torch.nn.Module()) == torch.device("cpu")


def test_train_config_device_field():
    base = {"model": "tiny-llama", "data": "d.jsonl", "out": "run"}
    assert TrainConfig(**base).device == "auto"
    assert TrainConfig(**base, device="cuda:1").device == "cuda:1"  # not checked against this machine
    with pytest.raises(ConfigError, match="device='gpu' is not a device") as info:
        TrainConfig(**base, device="gpu")
    assert info.value.cli_message().startswith("--device 'gpu'")
    # a run may go on on another machine: the device is not part of what --resume must match
    assert TrainConfig(**base).differences(TrainConfig(**base, device="cpu")) == []
