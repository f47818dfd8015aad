"""Pure logic behind Ray core names: accelerator types, node affinity ids,
call sites, nbray.cloudpickle, DynamicObjectRefGenerator."""

import pickle
import sys
import types

import pytest

import nbray
from nbray import _options
from nbray.common.ids import NodeID
from nbray.node import detect
from nbray.util import accelerators
from nbray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from nbray.worker.call_sites import CallSiteTable, user_frame


@pytest.mark.parametrize("name, expected", [
    ("NVIDIA H100 80GB HBM3", accelerators.NVIDIA_H100),
    ("NVIDIA H200", accelerators.NVIDIA_H200),
    ("Tesla V100-SXM2-16GB", accelerators.NVIDIA_TESLA_V100),
    ("NVIDIA A100-SXM4-40GB", accelerators.NVIDIA_A100),
    ("NVIDIA A10G", accelerators.NVIDIA_TESLA_A10G),
    ("Tesla T4", accelerators.NVIDIA_TESLA_T4),
    ("NVIDIA L40S", accelerators.NVIDIA_L40S),
    ("NVIDIA GeForce RTX 4090", "4090"),
    ("NVIDIA", ""),
    ("", ""),
])
def test_gpu_names_become_rays_accelerator_types(name, expected):
    assert detect.accelerator_type_from_gpu_name(name) == expected


def test_detected_gpu_type_comes_from_nvml(monkeypatch):
    fake = types.SimpleNamespace(
        nvmlInit=lambda: None, nvmlShutdown=lambda: None, nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: i, nvmlDeviceGetName=lambda h: b"NVIDIA H100 80GB HBM3")
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert detect.gpu_accelerator_type() == "H100"
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed
    assert detect.gpu_accelerator_type() == ""


def test_node_accelerator_resources_from_detection_and_label():
    assert detect.accelerator_resources("", None) == {}
    assert detect.accelerator_resources("H100", {}) == {"accelerator_type:H100": 1.0}
    assert detect.accelerator_resources("", {"ray.io/accelerator-type": "L4", "zone": "a"}) == {
        "accelerator_type:L4": 1.0}


def test_accelerator_type_option_asks_for_a_sliver_of_the_type():
    opts = _options.validate({"accelerator_type": accelerators.NVIDIA_A100, "num_gpus": 1},
                             _options.TASK_OPTIONS, "f")
    assert _options.resources_of(opts, default_cpus=1.0) == {"CPU": 1.0, "GPU": 1.0, "accelerator_type:A100": 0.001}
    for bad in (5, ""):
        with pytest.raises(TypeError, match="accelerator_type of f"):
            _options.validate({"accelerator_type": bad}, _options.TASK_OPTIONS, "f")


def test_accelerator_constants_and_deprecated_names():
    assert accelerators.NVIDIA_TESLA_V100 == "V100" and accelerators.NVIDIA_H100 == "H100"
    assert accelerators.NVIDIA_A100_80G == "A100-80G" and accelerators.GOOGLE_TPU_V4 == "TPU-V4"
    with pytest.warns(DeprecationWarning, match="use NVIDIA_A100"):
        assert accelerators.NVIDIA_TESLA_A100 == "A100"
    with pytest.raises(AttributeError):
        accelerators.NVIDIA_NOPE  # noqa: B018
    for name in accelerators.__all__:
        assert isinstance(getattr(accelerators, name), str)


def test_node_affinity_takes_a_node_id_or_its_hex():
    node = NodeID.from_random()
    assert NodeAffinitySchedulingStrategy(node, soft=True).node_id == node.hex()
    assert NodeAffinitySchedulingStrategy(node.hex(), soft=True) == NodeAffinitySchedulingStrategy(node, soft=True)
    with pytest.raises(TypeError, match="NodeID or its hex string"):
        NodeAffinitySchedulingStrategy(node.binary(), soft=False)
    with pytest.raises(ValueError, match="not a hex node id"):
        NodeAffinitySchedulingStrategy("node-1", soft=False)
    with pytest.raises(ValueError, match="a node id has 28"):
        NodeAffinitySchedulingStrategy("abcd", soft=False)


def test_call_site_table_is_bounded():
    table = CallSiteTable(capacity=2)
    table.add([b"a", b"b"], "one")
    table.add([b"c"], "two")
    assert len(table) == 2 and table.get(b"a") == "" and table.get(b"c") == "two"


def test_call_site_is_the_users_line():
    site = user_frame(sys._getframe())
    assert site.startswith(__file__) and site.endswith(":test_call_site_is_the_users_line")


def test_nbray_cloudpickle_pickles_by_value():
    from nbray import cloudpickle

    offset = 7
    data = cloudpickle.dumps(lambda x: x + offset)
    assert pickle.loads(data)(1) == 8 and cloudpickle.loads(data)(2) == 9
    assert callable(cloudpickle.register_pickle_by_value)
    # nbray's own pickler: functions keep their file (for remote tracebacks)
    from nbray.common.serialization import Pickler

    assert cloudpickle.Pickler is Pickler
    assert pickle.loads(data).__code__.co_filename == __file__
    import nbray.cloudpickle as module

    assert module is cloudpickle


def test_dynamic_generator_value_lists_refs():
    refs = [nbray.ObjectRef(bytes([i]) * 28) for i in range(3)]
    gen = nbray.DynamicObjectRefGenerator(iter(refs))
    assert len(gen) == 3 and list(gen) == refs and list(gen) == refs
    assert "3 refs" in repr(gen)
