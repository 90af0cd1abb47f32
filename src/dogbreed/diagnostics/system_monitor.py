"""Sample system utilisation in a background thread: CPU per core, I/O wait (the machine's and the training
job's own), memory, disk I/O, GPU."""

from __future__ import annotations

import csv
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dogbreed.config.errors import MissingExtraError
from dogbreed.diagnostics.io_wait import JobIoWait

log = logging.getLogger(__name__)

# Thread-state probes of the training job per system sample (every 50 ms at interval_s=0.5): enough for a
# percentage to compare with IOBottleneck's io_threshold, at a small CPU cost (docs/benchmarks.md).
IO_PROBES_PER_SAMPLE = 10


def _require_psutil():
    try:
        import psutil
    except ImportError:
        raise MissingExtraError(
            "profiler=on needs psutil: pip install -e '.[profiling]' (or pip install psutil)"
        ) from None
    return psutil


@dataclass
class SystemSample:
    time: float  # time.monotonic(), comparable with the profiler's step timestamps
    cpu_percent: float  # mean over cores
    cpu_per_core: list[float]
    iowait_percent: float  # the machine's CPU iowait, what SageMaker reports as I/OWaitPercentage
    memory_percent: float
    memory_used_gb: float
    disk_read_mb_s: float
    disk_write_mb_s: float
    gpu_util_percent: float | None = None
    gpu_memory_percent: float | None = None
    # Share of the interval in which a thread of the training process or its loader workers was blocked
    # on I/O (io_wait.py); None where thread states cannot be read.
    job_iowait_percent: float | None = None


class _GpuReader:
    """GPU utilisation through NVML (nvidia-ml-py, also what torch.cuda.utilization uses) and memory
    through torch; None for what cannot be read here."""

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.available = torch.cuda.is_available()
        self.device = torch.cuda.current_device() if self.available else None
        self.util_available = False
        self.util_reason = "no CUDA GPU on this machine"
        if self.available:
            try:
                torch.cuda.utilization(self.device)
                self.util_available = True
            except Exception as exc:  # pynvml missing or NVML not usable
                self.util_reason = f"GPU utilisation unreadable ({exc}); pip install nvidia-ml-py"

    def read(self) -> tuple[float | None, float | None]:
        if not self.available:
            return None, None
        util = float(self.torch.cuda.utilization(self.device)) if self.util_available else None
        free, total = self.torch.cuda.mem_get_info(self.device)
        return util, 100.0 * (total - free) / total


@dataclass
class SystemMonitor:
    interval_s: float = 0.5
    samples: list[SystemSample] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.interval_s <= 0:
            raise ValueError(f"profiler interval_s={self.interval_s} must be > 0")
        self.psutil = _require_psutil()
        self.gpu = _GpuReader()
        self.io = JobIoWait()
        self._process = self.psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        # The first cpu_percent/cpu_times_percent calls only set the baseline the next ones compare to.
        self.psutil.cpu_percent(percpu=True)
        self.psutil.cpu_times_percent()
        self._last_disk = (time.monotonic(), self.psutil.disk_io_counters())
        self._thread = threading.Thread(target=self._run, name="dogbreed-system-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=10 * self.interval_s + 5)
        self._thread = None

    def _run(self) -> None:
        probe_s = self.interval_s / IO_PROBES_PER_SAMPLE
        while True:
            for _ in range(IO_PROBES_PER_SAMPLE):
                if self._stop.wait(probe_s):
                    return
                try:
                    self.io.probe()
                except Exception as exc:  # a probing failure must never break training either
                    log.warning("system monitor: I/O wait probe failed, not probing again: %s", exc)
                    self.io.available, self.io.reason = False, f"probing failed: {exc}"
            try:
                self.samples.append(self.sample())
            except Exception as exc:  # a sampling failure must never break training
                log.warning("system monitor: sampling failed: %s", exc)

    def sample(self) -> SystemSample:
        ps = self.psutil
        per_core = ps.cpu_percent(percpu=True)
        times = ps.cpu_times_percent()
        memory = ps.virtual_memory()
        now, disk = time.monotonic(), ps.disk_io_counters()
        then, last = self._last_disk
        self._last_disk = (now, disk)
        seconds = max(now - then, 1e-6)
        read_mb = (disk.read_bytes - last.read_bytes) / 1e6 / seconds if disk and last else 0.0
        write_mb = (disk.write_bytes - last.write_bytes) / 1e6 / seconds if disk and last else 0.0
        gpu_util, gpu_memory = self.gpu.read()
        job_iowait = self.io.take()
        if self.io.available:  # loader workers start and stop with epochs
            self.io.set_children(c.pid for c in self._process.children(recursive=True))
        return SystemSample(
            time=now,
            cpu_percent=sum(per_core) / len(per_core),
            cpu_per_core=per_core,
            iowait_percent=float(getattr(times, "iowait", 0.0)),
            memory_percent=memory.percent,
            memory_used_gb=(memory.total - memory.available) / 1e9,
            disk_read_mb_s=read_mb,
            disk_write_mb_s=write_mb,
            gpu_util_percent=gpu_util,
            gpu_memory_percent=gpu_memory,
            job_iowait_percent=job_iowait,
        )

    def write_csv(self, path: Path, start_time: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        cores = max((len(s.cpu_per_core) for s in self.samples), default=0)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            names = [k for k in asdict(self.samples[0]) if k != "cpu_per_core"] if self.samples else ["time"]
            writer.writerow([*names, *(f"cpu{i}_percent" for i in range(cores))])
            for s in self.samples:
                row = asdict(s)
                row["time"] = round(s.time - start_time, 3)
                writer.writerow([*(row[k] for k in names), *s.cpu_per_core])
