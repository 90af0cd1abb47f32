"""A job of several instances: the variables Lightning's DDP launcher reads, from the job's hosts."""

from __future__ import annotations

from dogbreed.config.job_environment import JobEnvironment

# The framework module (sagemaker-pytorch-training) exports MASTER_PORT=7777 for its own launchers.
DEFAULT_MASTER_PORT = "7777"


def distributed_environment(job: JobEnvironment) -> dict[str, str]:
    """This host's node rank and the first host as master (the framework module sets MASTER_ADDR/PORT; the
    plain toolkit does not); {} on a job of one instance."""
    if len(job.hosts) < 2 or job.current_host not in job.hosts:
        return {}
    variables = {
        "NODE_RANK": str(job.hosts.index(job.current_host)),
        "MASTER_ADDR": job.launcher.get("MASTER_ADDR", job.hosts[0]),
        "MASTER_PORT": job.launcher.get("MASTER_PORT", DEFAULT_MASTER_PORT),
    }
    if job.network_interface:  # gloo (CPU) otherwise picks the address the host name resolves to
        variables["GLOO_SOCKET_IFNAME"] = job.launcher.get("GLOO_SOCKET_IFNAME", job.network_interface)
    return variables


def node_rank(job: JobEnvironment) -> str:
    return distributed_environment(job).get("NODE_RANK", "0")
