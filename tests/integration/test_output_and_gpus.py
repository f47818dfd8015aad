"""Worker output on the driver, and logical GPUs."""

import os
import subprocess
import sys

import pytest

import nbray

pytestmark = pytest.mark.timeout(60)


def test_task_and_actor_prints_reach_the_driver_with_a_prefix(tmp_path):
    code = (
        "import nbray, sys\n"
        "nbray.init(num_cpus=1)\n"
        "@nbray.remote\n"
        "def hello(i):\n"
        "    print('hello', i)\n"
        "    print('warn', i, file=sys.stderr)\n"
        "    return i\n"
        "@nbray.remote\n"
        "class Talker:\n"
        "    def say(self):\n"
        "        print('from actor')\n"
        "nbray.get([hello.remote(i) for i in range(2)])\n"
        "t = Talker.remote()\n"
        "nbray.get(t.say.remote())\n"
    )
    env = dict(os.environ, NBRAY_TMPDIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert "(hello pid=" in result.stdout and ") hello 0" in result.stdout and ") hello 1" in result.stdout
    assert ") warn 0" in result.stderr
    assert "(Talker.say pid=" in result.stdout and ") from actor" in result.stdout


def test_logical_gpus_set_cuda_visible_devices(shared_cluster, tmp_path):
    @nbray.remote(num_gpus=1)
    def which(path):
        ids = nbray.get_gpu_ids()
        with open(path, "a") as f:
            f.write("x")
        while len(open(path).read()) < 2:  # both tasks hold a GPU at once
            pass
        return os.environ["CUDA_VISIBLE_DEVICES"], ids

    path = str(tmp_path / "both")
    results = nbray.get([which.remote(path), which.remote(path)], timeout=30)
    assert sorted(r[0] for r in results) == ["0", "1"]
    assert sorted(r[1][0] for r in results) == [0, 1]
    for visible, ids in results:
        assert visible == ",".join(str(i) for i in ids)


def test_gpu_actor_and_fractional_gpus(shared_cluster):
    @nbray.remote(num_gpus=2)
    class TwoGPUs:
        def ids(self):
            return nbray.get_gpu_ids(), os.environ["CUDA_VISIBLE_DEVICES"]

    a = TwoGPUs.remote()
    ids, visible = nbray.get(a.ids.remote())
    assert ids == [0, 1] and visible == "0,1"
    nbray.kill(a)

    @nbray.remote(num_gpus=0.5)
    def half():
        return nbray.get_gpu_ids()

    assert len(nbray.get(half.remote(), timeout=30)) == 1


def test_infeasible_request_warns_and_stays_pending(tmp_path):
    code = (
        "import nbray, time\n"
        "nbray.init(num_cpus=1)\n"
        "@nbray.remote(num_gpus=8)\n"
        "def big(): return 1\n"
        "ref = big.remote()\n"
        "ready, _ = nbray.wait([ref], timeout=2)\n"
        "print('READY', len(ready))\n"
    )
    env = dict(os.environ, NBRAY_TMPDIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert "READY 0" in result.stdout
    assert "cannot be scheduled" in result.stderr and "'GPU': 8.0" in result.stderr
