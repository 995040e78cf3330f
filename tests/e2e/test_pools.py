"""The GPU pools' base job templates are accepted by a real Prefect server, exactly as
deployments/pools.md creates them (no Docker engine or cluster is needed to create a pool), and the
server enforces them: an undeclared placeholder is refused, and so is a deployment whose `gpus` job
variable is not an integer."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.e2e.conftest import REPO, prefect_cmd

pytestmark = pytest.mark.e2e

POOLS = {
    # name -> (type, template file or None), the commands of deployments/pools.md
    "ruinstruct-gpu": ("docker", "deployments/docker-gpu.json"),
    "ruinstruct-gpu-k8s": ("kubernetes", "deployments/k8s-gpu.json"),
    "ruinstruct-cpu": ("process", None),
}


def test_gpu_pools_are_created_from_the_templates_and_enforce_them(prefect_server, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    # the e2e server is shared: the project's own pools already exist there (the deploy tests and
    # the worker use them), so these are created under names of their own, with the same commands
    suffix = uuid.uuid4().hex[:6]
    pools = {f"{name}-{suffix}": spec for name, spec in POOLS.items()}
    gpu_pool = f"ruinstruct-gpu-{suffix}"
    # the three commands at once (each is a few seconds of CLI start-up)
    procs = {}
    for name, (kind, template) in pools.items():
        args = ["work-pool", "create", name, "--type", kind]
        if template:
            args += ["--base-job-template", template]
        procs[name] = prefect_server.start(prefect_cmd("--no-prompt", *args), tmp_path / f"{name}.log")
    for name, proc in procs.items():
        assert proc.wait(timeout=120) == 0, (tmp_path / f"{name}.log").read_text()

    with get_client(sync_client=True) as client:
        for name, (kind, template) in pools.items():
            pool = client.read_work_pool(name)
            assert pool.type == kind
            if template:
                # stored as given: nothing dropped or rewritten by the server
                assert pool.base_job_template == json.loads((REPO / template).read_text())
        assert pool.base_job_template["job_configuration"]["command"] == "{{ command }}"  # process default

        # a deployment on the Docker pool may ask for 2 GPUs; a non-integer is refused by the schema
        flow_id = client.create_flow_from_name("ruinstruct-pool-check")
        ok = client.create_deployment(flow_id=flow_id, name="two-gpus", work_pool_name=gpu_pool,
                                      entrypoint="flows/data.py:data_flow", job_variables={"gpus": 2})
        assert client.read_deployment(ok).job_variables == {"gpus": 2}
        with pytest.raises(PrefectHTTPStatusError) as bad:
            client.create_deployment(flow_id=flow_id, name="bad-gpus", work_pool_name=gpu_pool,
                                     entrypoint="flows/data.py:data_flow", job_variables={"gpus": "two"})
        assert bad.value.response.status_code in (409, 422)
        assert "gpus" in bad.value.response.text
        client.delete_deployment(ok)
        for name in pools:
            client.delete_work_pool(name)

    # the server checks placeholders against the declared variables: a typo is refused
    broken = json.loads((REPO / "deployments" / "docker-gpu.json").read_text())
    broken["job_configuration"]["container_create_kwargs"]["device_requests"][0]["count"] = "{{ gpu_count }}"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    name = f"broken-{uuid.uuid4().hex[:6]}"
    res = prefect_server.cli("work-pool", "create", name, "--type", "docker", "--base-job-template", str(path),
                             check=False)
    assert res.returncode != 0
    assert "gpu_count" in res.stdout + res.stderr
    assert prefect_server.cli("work-pool", "inspect", name, check=False).returncode != 0
